// Application Insights (Entra ID auth only) and the Logs Ingestion path: a data collection rule of kind Direct with one
// stream per custom table, each flowing unchanged into its table. A Direct rule has its own Logs Ingestion endpoint
// (properties.endpoints.logsIngestion), so no data collection endpoint is needed; one is created only when asked
// (vnetEnabled), as the resource an Azure Monitor Private Link Scope takes, and the rule is then used through it.
// (learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview: "It sends the data to an endpoint specified
// by the DCR, or to a data collection endpoint (DCE) if you're using private link"; data-collection-rule-structure:
// the endpoints section is created only if the rule's kind is Direct.)

param location string

@description('Region of the data collection endpoint and rule: the workspace\'s, which the service requires (an existing workspace may be in another region than the app).')
param dataCollectionLocation string

@description('Create a data collection endpoint and send through it (vnetEnabled: private link). False: the rule\'s own Logs Ingestion endpoint, no endpoint resource.')
param createDataCollectionEndpoint bool = false

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

param digestRunsStreamName string
param digestRunsTableName string

@description('Columns of the owner-digest run stream: the fields of DigestRunRecord (the same array as its table).')
param digestRunColumns array

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

resource dataCollectionEndpoint 'Microsoft.Insights/dataCollectionEndpoints@2023-03-11' = if (createDataCollectionEndpoint) {
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
  // Direct: the rule gets its own Logs Ingestion endpoint (properties.endpoints.logsIngestion).
  kind: 'Direct'
  properties: {
    description: 'AWS IAM access keys, other long-lived credentials, collector runs and owner-digest runs, sent through the Logs Ingestion API'
    dataCollectionEndpointId: createDataCollectionEndpoint ? dataCollectionEndpoint.id : null
    streamDeclarations: {
      '${keysStreamName}': {
        columns: keyColumns
      }
      '${runsStreamName}': {
        columns: runColumns
      }
      '${digestRunsStreamName}': {
        columns: digestRunColumns
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
          digestRunsStreamName
        ]
        destinations: [
          workspaceDestination
        ]
        transformKql: 'source'
        outputStream: 'Custom-${digestRunsTableName}'
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
// LOGS_INGESTION_ENDPOINT: the rule's own endpoint (https://<rule name>-<suffix>.<region>-1.ingest.monitor.azure.com),
// or the data collection endpoint's when there is one.
output logsIngestionEndpoint string = createDataCollectionEndpoint ? dataCollectionEndpoint.properties.logsIngestion.endpoint : dataCollectionRule.properties.endpoints.logsIngestion
output logsIngestionRuleId string = dataCollectionRule.properties.immutableId
