// Workspace functions: queries saved in the workspace under a name that other queries, workbooks and rules call like a
// table. Each is a file of queries/ loaded unchanged (as the workbook, alerts and Sentinel rules load them).
// Deployed in the workspace's resource group, like the tables.

@description('Name of the Log Analytics workspace holding the collector\'s tables and AWSCloudTrail.')
param workspaceName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

// AwsIamKeyCreators: who created each key (AWSCloudTrail CreateAccessKey joined on AccessKeyFingerprint), e.g.
//   AwsIamKeyCreators | where CreatedForAnotherUser
resource keyCreators 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'aws-iam-keys-key-creators'
  properties: {
    category: 'AWS IAM access keys'
    displayName: 'AWS IAM: who created each access key'
    functionAlias: 'AwsIamKeyCreators'
    query: loadTextContent('../../queries/key-creators.kql')
    version: 2
  }
}

output functionNames array = [
  keyCreators.properties.functionAlias
]
