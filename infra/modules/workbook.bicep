// The Azure Monitor workbook of the AWS IAM access keys: tiles of the finding counts, the key-creation trend, findings
// by account, drill-down tables and the collector's health. Its JSON is generated from queries/*.kql by
// scripts/build_workbook.py (tests/contract/test_queries.py checks it is up to date); the workspace's resource id replaces the
// placeholder so that the workbook opens on that workspace from the gallery too.

param location string
param tags object

@description('Resource id of the Log Analytics workspace holding the two custom tables.')
param workspaceResourceId string

@description('Name shown in the workbook gallery.')
param displayName string = 'AWS IAM access keys'

var serializedData = replace(loadTextContent('../workbook/aws-iam-keys.workbook.json'), '__WORKSPACE_RESOURCE_ID__', workspaceResourceId)

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, workspaceResourceId, 'aws-iam-keys-workbook')
  location: location
  tags: union(tags, {
    'hidden-title': displayName
  })
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    // The gallery matches workbooks to their resource by the lower-cased id.
    sourceId: toLower(workspaceResourceId)
    serializedData: serializedData
    version: 'Notebook/1.0'
  }
}

output id string = workbook.id
output name string = workbook.name
