// Owner digests: the app's identity reads the workspace (queries/owner-digest.kql through the Log Analytics query
// API). Deployed in the workspace's resource group, like the tables, since an existing workspace may be elsewhere.

@description('Name of the Log Analytics workspace holding the collector\'s tables.')
param workspaceName string

@description('Object (principal) id of the app\'s user-assigned identity.')
param principalId string

var roles = {
  logAnalyticsReader: '73c42c96-874c-492b-b04d-ab87d138a893'
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

// Read this workspace's tables only (the digests run one query over the latest snapshot).
resource workspaceReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, principalId, roles.logAnalyticsReader)
  scope: workspace
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.logAnalyticsReader)
  }
}
