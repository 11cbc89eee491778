// The vault of the collector's secrets: in access_key mode the AWS IAM user's key (put there by the operator, never by
// the template); with the opt-in legacy Data Collector sink also the workspace shared key (legacy-workspace-key.bicep).
// RBAC only, soft delete on; purge protection on request (it keeps the name taken for 90 days after `azd down`). In
// web_identity mode with the default sink the vault stays empty. Every read of a secret is audited in the workspace.

param name string
param location string
param tags object

@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Purge protection: a deleted vault (and its name) stays for softDeleteRetentionInDays and cannot be purged, so a new vault of the same name cannot be created until then.')
param enablePurgeProtection bool = false

@description('Resource id of the Log Analytics workspace that receives the vault\'s audit log (AuditEvent: every secret read).')
param workspaceResourceId string

@allowed([
  'Enabled'
  'Disabled'
])
@description('Disabled with vnetEnabled and no allowedIpRanges: the app then reaches the vault through a private endpoint (modules/network.bicep).')
param publicNetworkAccess string = 'Enabled'

@allowed([
  'Allow'
  'Deny'
])
@description('Deny with vnetEnabled: only the private endpoint and allowedIpRanges reach the vault.')
param networkDefaultAction string = 'Allow'

@description('With networkDefaultAction Deny: IP addresses or CIDR ranges that may still reach the vault (the operator putting the AWS key there).')
param allowedIpRanges array = []

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: without vnetEnabled the Function App on the Flex Consumption plan has no fixed outbound address, so the firewall stays open; access is Entra ID RBAC only (no access policies, no keys). With vnetEnabled the default action is Deny.
  // checkov:skip=CKV_AZURE_189: public network access is closed with vnetEnabled (private endpoint); without it every request still needs an Entra ID token and an RBAC role.
  // checkov:skip=CKV_AZURE_110: purge protection is a parameter (enableKeyVaultPurgeProtection), off by default so that `azd down` then `azd up` works; soft delete stays on.
  // checkov:skip=CKV_AZURE_42: soft delete is on; purge protection is the parameter above.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // The service refuses false once true, and false is its default: omit the property unless it is turned on.
    enablePurgeProtection: enablePurgeProtection ? true : null
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: networkDefaultAction
      ipRules: [for range in allowedIpRanges: {
        value: range
      }]
    }
  }
}

// Who read which secret, when, from where: AuditEvent into the workspace (the collector's reads included).
resource auditToWorkspace 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceResourceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
