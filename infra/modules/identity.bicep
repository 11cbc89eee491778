// The one identity of the collector: a user-assigned managed identity used for storage (AzureWebJobsStorage and the
// deployment container), Key Vault, App Insights, the Logs Ingestion API and, in web_identity mode, AWS.

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
