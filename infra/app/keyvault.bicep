// Key Vault (Azure RBAC authorization) holding the Fernet key the app uses to encrypt destination
// connection strings at rest. The app reads it through a Key Vault reference in its app settings
// (EXPORT_SECRET_KEY), resolved with the user-assigned identity (Key Vault Secrets User).

@description('Key Vault name: 3-24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Fernet key (URL-safe base64 of 32 bytes) written as the secret export-secret-key. Empty leaves the secret as it is (redeploys), so a redeploy never replaces the key that sealed the stored connection strings.')
@secure()
param exportSecretKey string = ''

@description('Turn on purge protection. Once on it cannot be turned off, and a deleted vault name stays reserved for the retention period.')
param enablePurgeProtection bool = true

@description('Days a deleted vault or secret stays recoverable.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

var secretName = 'export-secret-key'

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' = {
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
    // The API refuses `false` once purge protection was on, so "off" is expressed as null.
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource exportSecret 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = if (!empty(exportSecretKey)) {
  parent: vault
  name: secretName
  properties: {
    value: exportSecretKey
    contentType: 'Fernet key'
  }
}

@description('Key Vault name.')
output name string = vault.name

@description('Key Vault resource id.')
output id string = vault.id

@description('Versionless URI of export-secret-key for the Key Vault reference (built from the vault URI, so it is known also when this deployment did not write the secret).')
output exportSecretUri string = '${vault.properties.vaultUri}secrets/${secretName}'
