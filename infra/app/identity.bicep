// The user-assigned managed identity the function app runs as. Every data-plane permission
// (storage, Key Vault, Application Insights) is granted to this identity in roles.bicep, before
// the app exists, so the app never starts without its permissions.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the resource.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity (for identity blocks and keyVaultReferenceIdentity).')
output id string = identity.id

@description('Name of the identity.')
output name string = identity.name

@description('Client (application) id of the identity: what AzureWebJobsStorage__clientId needs.')
output clientId string = identity.properties.clientId

@description('Object (principal) id of the identity: what role assignments need.')
output principalId string = identity.properties.principalId
