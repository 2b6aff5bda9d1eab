// The Flex Consumption plan and the Linux Python 3.11 function app, running as the user-assigned
// identity: identity-based AzureWebJobsStorage, Entra-authenticated Application Insights, and the
// Fernet key through a Key Vault reference.

@description('Function app name (globally unique: it becomes <name>.azurewebsites.net).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Name of the app storage account (same resource group).')
param storageAccountName string

@description('Blob container holding the deployment package.')
param deploymentContainerName string

@description('Name of the Application Insights component (same resource group).')
param appInsightsName string

@description('Versionless Key Vault secret URI of the Fernet key (export-secret-key).')
param exportSecretUri string

@description('Most instances the app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of each instance in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Export job queue (must match the queue created in storage.bicep).')
param exportQueueName string = 'export-jobs'

@description('UCD event store container (must match the container created in storage.bicep).')
param ucdContainerName string = 'ucd'

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// Every setting the app reads (see local.settings.sample.json). Flex Consumption refuses
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION as app settings: the runtime comes from
// functionAppConfig.runtime below. AzureWebJobsStorage is the identity-based form (no key).
var appSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  EXPORT_SECRET_KEY: '@Microsoft.KeyVault(SecretUri=${exportSecretUri})'
  EXPORT_SETTLE_SECONDS: '120'
  EXPORT_QUEUE_NAME: exportQueueName
  EXPORT_TABLE_PREFIX: ''
  UCD_CONTAINER: ucdContainerName
  UCD_COMMIT_TIMEOUT_SECONDS: '20'
  EXPORT_MAX_WINDOWS_PER_RUN: '12'
  EXPORT_MAX_SECONDS_PER_RUN: '240'
  EXPORT_LEASE_SECONDS: '600'
  EXPORT_MAX_DEQUEUE_COUNT: '5'
  EXPORT_SPLIT_BYTES: '1073741824'
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
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

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
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
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
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
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// A PUT of appsettings replaces the whole set: settings added by hand are removed on redeploy.
resource siteAppSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: appSettings
}

@description('Function app name.')
output name string = site.name

@description('Default host name, e.g. <name>.azurewebsites.net')
output defaultHostName string = site.properties.defaultHostName

@description('Every outbound IP address the app may use (customers allowlist these on their storage firewall).')
output possibleOutboundIpAddresses array = split(site.properties.possibleOutboundIpAddresses, ',')

@description('Outbound IP addresses the app uses right now (a subset of possibleOutboundIpAddresses).')
output outboundIpAddresses array = split(site.properties.outboundIpAddresses, ',')
