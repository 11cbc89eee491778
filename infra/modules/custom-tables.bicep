// The collector's custom tables (keys, runs, other long-lived credentials, owner-digest runs) (docs/contract.md), and
// the workspace function over them. Deployed in the workspace's resource group, which may be
// another one than the app's when an existing workspace is used. The columns come from main.bicep, where they are
// declared once for both the tables and the data collection rule; tests/contract/test_infra.py checks them against
// shared/records.py, the code's single source of truth.

param workspaceName string

@description('Name of the key table, e.g. AwsIamAccessKeys_CL.')
param keysTableName string

@description('Name of the run table, e.g. AwsIamKeyCollectorRuns_CL.')
param runsTableName string

@description('Name of the table of the other long-lived credentials, e.g. AwsIamCredentials_CL.')
param credentialsTableName string

@description('Columns of the key table: the fields of KeyRecord.')
param keyColumns array

@description('Columns of the run table: the fields of RunRecord.')
param runColumns array

@description('Name of the owner-digest run table, e.g. AwsIamOwnerDigestRuns_CL.')
param digestRunsTableName string

@description('Columns of the owner-digest run table: the fields of DigestRunRecord.')
param digestRunColumns array

@description('Columns of the credentials table: the fields of CredentialRecord.')
param credentialColumns array

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

resource credentialsTable 'Microsoft.OperationalInsights/workspaces/tables@2023-09-01' = {
  parent: workspace
  name: credentialsTableName
  properties: {
    plan: 'Analytics'
    retentionInDays: retentionInDays
    schema: {
      name: credentialsTableName
      description: 'AWS IAM long-lived credentials other than access keys (service-specific credentials, signing certificates), one row per credential per collector run'
      columns: credentialColumns
    }
  }
}

// One view of everything long-lived: AwsIamLongLivedCredentials(), a workspace function any query can call, whose body
// is queries/long-lived-credentials.kql unchanged (the latest snapshot of keys and other credentials, in common
// columns). Saved after the tables it reads.
resource longLivedFunction 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = {
  parent: workspace
  name: 'aws-iam-long-lived-credentials'
  properties: {
    category: 'AWS IAM key collector'
    displayName: 'AWS IAM long-lived credentials (access keys, API keys, service-specific credentials, signing certificates)'
    functionAlias: 'AwsIamLongLivedCredentials'
    query: loadTextContent('../../queries/long-lived-credentials.kql')
    version: 2
  }
  dependsOn: [
    keysTable
    runsTable
    credentialsTable
  ]
}

output workspaceId string = workspace.id
output customerId string = workspace.properties.customerId
