// The collector's custom tables (keys, runs, owner-digest runs) (shared/contract.md). Deployed in the workspace's resource group, which may be
// another one than the app's when an existing workspace is used. The columns come from main.bicep, where they are
// declared once for both the tables and the data collection rule; tests/contract/test_infra.py checks them against
// shared/records.py, the code's single source of truth.

param workspaceName string

@description('Name of the key table, e.g. AwsIamAccessKeys_CL.')
param keysTableName string

@description('Name of the run table, e.g. AwsIamKeyCollectorRuns_CL.')
param runsTableName string

@description('Columns of the key table: the fields of KeyRecord.')
param keyColumns array

@description('Columns of the run table: the fields of RunRecord.')
param runColumns array

@description('Name of the owner-digest run table, e.g. AwsIamOwnerDigestRuns_CL.')
param digestRunsTableName string

@description('Columns of the owner-digest run table: the fields of DigestRunRecord.')
param digestRunColumns array

@minValue(4)
@maxValue(730)
param retentionInDays int

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

resource keysTable 'Microsoft.OperationalInsights/workspaces/tables@2023-09-01' = {
  parent: workspace
  name: keysTableName
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays
    schema: {
      name: keysTableName
      description: 'AWS IAM access keys, one row per key per collector run'
      columns: keyColumns
    }
  }
}

resource runsTable 'Microsoft.OperationalInsights/workspaces/tables@2023-09-01' = {
  parent: workspace
  name: runsTableName
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays
    schema: {
      name: runsTableName
      description: 'AWS IAM key collector runs, one row per run'
      columns: runColumns
    }
  }
}

resource digestRunsTable 'Microsoft.OperationalInsights/workspaces/tables@2023-09-01' = {
  parent: workspace
  name: digestRunsTableName
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays
    schema: {
      name: digestRunsTableName
      description: 'AWS IAM key collector owner-digest runs, one row per digest run'
      columns: digestRunColumns
    }
  }
}

output workspaceId string = workspace.id
output customerId string = workspace.properties.customerId
