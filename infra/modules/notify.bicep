// Owner digests (docs/owner-digests.md): Azure Communication Services to send the e-mail, an Email Communication
// Service with an Azure-managed domain (<id>.azurecomm.net: no DNS to set up) linked to it, and the app's identity
// allowed to send through that one resource. Local auth is disabled: no connection string or access key exists; the
// app signs in with its managed identity (azure-communication-email's EmailClient with a token credential).

param tags object

@description('Name of the Communication Services resource (globally unique: its endpoint is https://<name>.<geo>.communication.azure.com).')
param communicationServiceName string

@description('Name of the Email Communication Service.')
param emailServiceName string

@description('Where the Communication Services data is stored at rest (the email service\'s must be the same), e.g. United States, Europe.')
param dataLocation string

@description('Object (principal) id of the app\'s user-assigned identity: allowed to send.')
param principalId string

// Built-in role that permits sending e-mail with Microsoft Entra ID through a Communication Services resource. The
// narrowest built-in one; a custom role needs Microsoft.Communication/CommunicationServices/Read and /Write and
// Microsoft.Communication/EmailServices/write (Microsoft's SMTP authentication quickstart lists them).
var roles = {
  communicationAndEmailServiceOwner: '09976791-48a7-449e-bb21-39d1a415f350'
}

resource emailService 'Microsoft.Communication/emailServices@2025-05-01' = {
  name: emailServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

// The Azure-managed domain: its name is fixed by the service.
resource managedDomain 'Microsoft.Communication/emailServices/domains@2025-05-01' = {
  parent: emailService
  name: 'AzureManagedDomain'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'AzureManaged'
    userEngagementTracking: 'Disabled'
  }
}

resource communicationService 'Microsoft.Communication/communicationServices@2025-05-01' = {
  name: communicationServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    linkedDomains: [
      managedDomain.id
    ]
    disableLocalAuth: true
  }
}

// Send e-mail through this resource only.
resource communicationSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communicationService.id, principalId, roles.communicationAndEmailServiceOwner)
  scope: communicationService
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.communicationAndEmailServiceOwner)
  }
}

// NOTIFY_EMAIL_ENDPOINT and NOTIFY_SENDER.
output endpoint string = 'https://${communicationService.properties.hostName}'
output sender string = 'DoNotReply@${managedDomain.properties.mailFromSenderDomain}'
