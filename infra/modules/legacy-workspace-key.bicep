// Legacy Data Collector API sink only (retired by Microsoft on 2026-09-14). main.bicep deploys this module only when
// enableLegacyDataCollector is true; otherwise no workspace shared key exists anywhere in the deployment. The key goes
// straight from the workspace into Key Vault: it is never a parameter, an output or an app setting.

param keyVaultName string
param workspaceName string
param workspaceResourceGroupName string
param workspaceSubscriptionId string
param tags object

@description('LOG_ANALYTICS_WORKSPACE_KEY_SECRET: name of the secret.')
param secretName string = 'log-analytics-workspace-key'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
}

resource workspaceKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  // checkov:skip=CKV_AZURE_41: the workspace shared key has no expiry of its own; it is rotated with the workspace's regenerateSharedKey, and the next provision rewrites the secret.
  parent: vault
  name: secretName
  tags: tags
  properties: {
    contentType: 'Log Analytics workspace shared key (legacy Data Collector API)'
    value: workspace.listKeys().primarySharedKey
  }
}

output secretName string = workspaceKeySecret.name
