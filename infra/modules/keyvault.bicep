// The vault of the collector's secrets: in access_key mode the AWS IAM user's key (put there by the operator, never by
// the template); with the opt-in legacy Data Collector sink also the workspace shared key (legacy-workspace-key.bicep).
// RBAC only, soft delete and purge protection on. In web_identity mode with the default sink the vault stays empty.

param name string
param location string
param tags object

@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the Function App on the Flex Consumption plan has no fixed outbound address and no VNet in this template, so the firewall stays open; access is Entra ID RBAC only (no access policies, no keys).
  // checkov:skip=CKV_AZURE_189: public network access is needed for the same reason (no private endpoint in this template); every request still needs an Entra ID token and an RBAC role.
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
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
