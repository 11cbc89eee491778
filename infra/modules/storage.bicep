// The Function App's storage: AzureWebJobsStorage (timer trigger leases, blobs only) and the Flex Consumption
// deployment container. Entra ID only: shared keys are disabled, so no connection string or account key exists.

param name string
param location string
param tags object

@description('Blob container that holds the deployment package of the Flex Consumption app.')
param deploymentContainerName string

@description('Blob container where the collector keeps records a sink could not deliver (OUTBOX_CONTAINER).')
param outboxContainerName string

@description('Blob container holding the reviewed exceptions file when EXCEPTIONS_SOURCE=blob (EXCEPTIONS_CONTAINER).')
param exceptionsContainerName string = 'collector-config'

@allowed([
  'Enabled'
  'Disabled'
])
@description('Disabled with vnetEnabled: the app then reaches the blobs through a private endpoint (modules/network.bicep).')
param publicNetworkAccess string = 'Enabled'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_206: the account holds only the deployment package and the timer's lease blobs, both recreated by the next `azd deploy`; locally redundant storage is enough.
  // checkov:skip=CKV_AZURE_59: a Flex Consumption app without VNet integration reaches its storage over the public endpoint; shared keys are disabled, so every request needs an Entra ID token and a data role.
  // checkov:skip=CKV_AZURE_35: see CKV_AZURE_59: the default network action must stay Allow for a Function App without VNet integration.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: publicNetworkAccess == 'Enabled' ? 'Allow' : 'Deny'
    }
  }
}

resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    // Every upload of the exceptions blob keeps the version before it: who accepted which risk, and when, stays
    // recoverable, and a bad upload is undone by promoting the previous version.
    isVersioningEnabled: true
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource outboxContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: outboxContainerName
  properties: {
    publicAccess: 'None'
  }
}

// EXCEPTIONS_SOURCE=blob: the reviewed exceptions file, read at each run (docs/exceptions.md).
resource exceptionsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: exceptionsContainerName
  properties: {
    publicAccess: 'None'
  }
}

output id string = storage.id
output name string = storage.name
output blobServiceUri string = storage.properties.primaryEndpoints.blob
