// The collector: a Python 3.11 Function App on the Flex Consumption plan (FC1). Everything it reaches - storage,
// Key Vault, Application Insights, the Logs Ingestion API, AWS in web_identity mode - it reaches as the user-assigned
// identity: no connection string, no storage key, no publishing credential.

param name string
param planName string
param location string
param tags object

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

param storageAccountName string
param deploymentContainerName string
param applicationInsightsConnectionString string

@description('The collector\'s own app settings (shared/contract.md), merged with the host settings below.')
param appSettings object

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// 40 is the lowest maximum instance count the Flex Consumption plan accepts (learn.microsoft.com/azure/azure-functions/
// flex-consumption-how-to#set-instance-counts: "The lowest maximum instance count value allowed is 40").
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('vnetEnabled: resource id of the subnet (delegated to Microsoft.App/environments) the app joins; empty for none.')
param virtualNetworkSubnetId string = ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: zone redundancy is not needed for a batch job that retries on its next schedule.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: `azd deploy` publishes through the app's scm endpoint; the app itself has no HTTP function (a timer trigger only), so nothing is exposed.
  // checkov:skip=CKV_AZURE_17: no HTTP function to protect (a timer trigger only); client certificates would guard nothing.
  // checkov:skip=CKV_AZURE_212: a collector that runs a few minutes every six hours; the Flex Consumption plan scales from zero and has no minimum instance count to set.
  // checkov:skip=CKV_AZURE_213: no HTTP endpoint to probe (a timer trigger only); failures show in Application Insights and the run table.
  // checkov:skip=CKV_AZURE_78: Flex Consumption has no FTP(S) deployment at all and newer stamps reject siteConfig.ftpsState (ARM error 51021); FTP publishing credentials are turned off below (basicPublishingCredentialsPolicies 'ftp').
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      // No ftpsState: Flex Consumption offers no FTP(S) deployment and newer stamps refuse the property (ARM error
      // 51021; microsoft/azure-pipelines-tasks#21032); Microsoft's Flex samples set none.
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // This is the 'appsettings' config (environment variables), not the 'web' site config these checks read:
  // checkov:skip=CKV_AZURE_13: App Service authentication has nothing to protect: the app has no HTTP function (a timer trigger only).
  // checkov:skip=CKV_AZURE_63: HTTP logging is an App Service feature the Flex Consumption plan does not offer; the host logs to Application Insights.
  // checkov:skip=CKV_AZURE_65: detailed error pages are an App Service feature the Flex Consumption plan does not offer; errors go to Application Insights.
  // checkov:skip=CKV_AZURE_66: failed request tracing is an App Service feature the Flex Consumption plan does not offer; requests are traced in Application Insights.
  // checkov:skip=CKV_AZURE_80: the app runs Python 3.11, not .NET.
  // checkov:skip=CKV_AZURE_88: the Flex Consumption plan deploys from a blob container and has no Azure Files content share.
  // checkov:skip=CKV_AZURE_222: public network access is a property of the site (see the skip there), not of its app settings.
  parent: functionApp
  name: 'appsettings'
  properties: union(appSettings, {
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    // The host's storage through the identity, every service named: blobs for the timer's schedule monitor and the
    // host's lock; tables for the host's diagnostic events (AZFD0003; Storage Table Data Contributor, see
    // role-assignments.bicep); a queue URI as well, because the platform takes identity-based host storage as
    // configured only with all three service URIs (or accountName) and otherwise warns (Azure/azure-functions-host
    // #9349). Nothing in a timer-only app uses queues, so no queue role is granted.
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  })
}

// No FTP and no basic-auth deployment: azd deploys with Entra ID.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

output id string = functionApp.id
output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
