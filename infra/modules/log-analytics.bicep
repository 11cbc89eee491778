// A new Log Analytics workspace (main.bicep skips this module when an existing workspace is given).

param name string
param location string
param tags object

@minValue(30)
@maxValue(730)
param retentionInDays int

@description('Refuse shared-key (Data Collector API) ingestion and queries: Entra ID only. False only for the opt-in legacy sink.')
param disableLocalAuth bool = true

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
      disableLocalAuth: disableLocalAuth
    }
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

output id string = workspace.id
output name string = workspace.name
