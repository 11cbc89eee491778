// Application Insights (Entra ID auth only) and the Logs Ingestion path: a data collection endpoint and a data
// collection rule with one stream per custom table, each flowing unchanged into its table.

param location string

@description('Region of the data collection endpoint and rule: the workspace\'s, which the service requires (an existing workspace may be in another region than the app).')
param dataCollectionLocation string

param tags object
param applicationInsightsName string
param dataCollectionEndpointName string
param dataCollectionRuleName string

@description('Resource id of the Log Analytics workspace (new or existing).')
param workspaceResourceId string

param keysStreamName string
param runsStreamName string
param credentialsStreamName string
param keysTableName string
param runsTableName string
param credentialsTableName string

@description('Columns of the key stream: the fields of KeyRecord (the same array as the key table).')
param keyColumns array

@description('Columns of the run stream: the fields of RunRecord (the same array as the run table).')
param runColumns array

@description('Columns of the credentials stream: the fields of CredentialRecord (the same array as its table).')
param credentialColumns array

var workspaceDestination = 'collectorWorkspace'

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspaceResourceId
    DisableLocalAuth: true
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource dataCollectionEndpoint 'Microsoft.Insights/dataCollectionEndpoints@2023-03-11' = {
  name: dataCollectionEndpointName
  location: dataCollectionLocation
  tags: tags
  properties: {
    description: 'Logs Ingestion endpoint of the AWS IAM access-key collector'
    networkAcls: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

resource dataCollectionRule 'Microsoft.Insights/dataCollectionRules@2023-03-11' = {
  name: dataCollectionRuleName
  location: dataCollectionLocation
  tags: tags
  properties: {
    description: 'AWS IAM access keys, other long-lived credentials and collector runs, sent by the collector through the Logs Ingestion API'
    dataCollectionEndpointId: dataCollectionEndpoint.id
    streamDeclarations: {
      '${keysStreamName}': {
        columns: keyColumns
      }
      '${runsStreamName}': {
        columns: runColumns
      }
      '${credentialsStreamName}': {
        columns: credentialColumns
      }
    }
    destinations: {
      logAnalytics: [
        {
          name: workspaceDestination
          workspaceResourceId: workspaceResourceId
        }
      ]
    }
    dataFlows: [
      {
        streams: [
          keysStreamName
        ]
        destinations: [
          workspaceDestination
        ]
        transformKql: 'source'
        outputStream: 'Custom-${keysTableName}'
      }
      {
        streams: [
          runsStreamName
        ]
        destinations: [
          workspaceDestination
        ]
        transformKql: 'source'
        outputStream: 'Custom-${runsTableName}'
      }
      {
        streams: [
          credentialsStreamName
        ]
        destinations: [
          workspaceDestination
        ]
        transformKql: 'source'
        outputStream: 'Custom-${credentialsTableName}'
      }
    ]
  }
}

output applicationInsightsName string = applicationInsights.name
output applicationInsightsConnectionString string = applicationInsights.properties.ConnectionString
output dataCollectionRuleName string = dataCollectionRule.name
output logsIngestionEndpoint string = dataCollectionEndpoint.properties.logsIngestion.endpoint
output logsIngestionRuleId string = dataCollectionRule.properties.immutableId
