// Scheduled event export to customers' Azure Blob Storage: everything the function app needs in
// one resource group. Deploy with `az deployment group create` (see infra/README.md).
//
//   identity.bicep     user-assigned managed identity the app runs as
//   storage.bicep      app storage: deployment package, UCD container, export queues, tables
//   monitoring.bicep   Log Analytics workspace + Application Insights
//   keyvault.bicep     Key Vault (RBAC) with the Fernet key export-secret-key
//   roles.bicep        data-plane roles of the identity (before the app starts)
//   functionapp.bicep  Flex Consumption plan + Linux Python 3.11 function app + app settings
//   alerts.bicep       action group + log alerts on export lag, poison messages, credential errors

targetScope = 'resourceGroup'

@description('Short name every resource name starts from: 3-16 lowercase letters, digits or hyphens.')
@minLength(3)
@maxLength(16)
param baseName string = 'ucdexport'

@description('Azure region of every resource; it must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Fernet key that encrypts destination connection strings at rest; written to Key Vault as export-secret-key. Required on the first deployment; leave it empty on redeploys to keep the stored key (a new key could not open the connection strings sealed with the old one). Generate with: .venv/bin/python -m exporter secret-key')
@secure()
param exportSecretKey string = ''

@description('E-mail address that receives the export alerts.')
param alertEmail string

@description('Export lag alert threshold in seconds (default 3 hours).')
@minValue(600)
param lagAlertThresholdSeconds int = 3 * 3600

@description('Most Flex Consumption instances the app may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Replication of the app storage account (holds the UCD event store).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Turn on Key Vault purge protection (recommended in production; it cannot be turned off later).')
param keyVaultPurgeProtection bool = true

@description('Accept only Entra ID authenticated telemetry in Application Insights.')
param appInsightsDisableLocalAuth bool = true

@description('Tags applied to every resource.')
param tags object = {}

@description('Client id of the Microsoft Entra app registration for the console sign-in (see infra/README.md, "The console"). Empty: the console stays off; the API is unaffected.')
param consoleClientId string = ''

@description('Keyless destinations (infra/README.md, "Keyless destinations"): ARN of the platform\'s AWS role (federated from the app\'s managed identity) that customers trust. Empty: S3 by role is off.')
param keylessAwsPrincipalArn string = ''

@description('Keyless destinations: email of the platform\'s Google service account (workload identity federation). Empty: GCS without a key is off.')
param keylessGcpServiceAccount string = ''

@description('Keyless destinations: client id of the platform\'s multi-tenant Entra application (its credential: the app\'s managed identity). Empty: Azure by Entra ID is off.')
param keylessAzureClientId string = ''

// Globally unique names are derived from the resource group and baseName, so a redeploy keeps them.
var token = toLower(uniqueString(subscription().id, resourceGroup().id, baseName))
var compactName = take(replace(toLower(baseName), '-', ''), 9)
var names = {
  identity: 'id-${baseName}-${token}'
  storage: 'st${compactName}${token}'
  logAnalytics: 'log-${baseName}-${token}'
  appInsights: 'appi-${baseName}-${token}'
  keyVault: 'kv${compactName}${token}'
  plan: 'plan-${baseName}-${token}'
  functionApp: 'func-${baseName}-${token}'
}
var deploymentContainerName = 'app-package'
var ucdContainerName = 'ucd'
var exportQueueName = 'export-jobs'

module identity 'app/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    ucdContainerName: ucdContainerName
    exportQueueName: exportQueueName
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
    location: location
    tags: tags
    disableLocalAuth: appInsightsDisableLocalAuth
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
    exportSecretKey: exportSecretKey
    enablePurgeProtection: keyVaultPurgeProtection
  }
}

module roles 'app/roles.bicep' = {
  name: 'roles'
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    keyVaultName: keyVault.outputs.name
  }
}

module functionApp 'app/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    appInsightsName: monitoring.outputs.appInsightsName
    exportSecretUri: keyVault.outputs.exportSecretUri
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: 2048
    exportQueueName: exportQueueName
    ucdContainerName: ucdContainerName
    consoleClientId: consoleClientId
    keylessAwsPrincipalArn: keylessAwsPrincipalArn
    keylessGcpServiceAccount: keylessGcpServiceAccount
    keylessAzureClientId: keylessAzureClientId
  }
  // The host must find its storage, secret and telemetry permissions in place when it starts.
  dependsOn: [
    roles
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  params: {
    namePrefix: baseName
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    alertEmail: alertEmail
    lagThresholdSeconds: lagAlertThresholdSeconds
  }
}

@description('Function app name (for `func azure functionapp publish <name> --python`).')
output functionAppName string = functionApp.outputs.name

@description('Default host name of the function app; the HTTP API is https://<host>/api/...')
output functionAppDefaultHostName string = functionApp.outputs.defaultHostName

@description('Every outbound IP address the function app may use (possibleOutboundIpAddresses): customers allowlist all of these on their storage firewall.')
output functionAppOutboundIpAddresses array = functionApp.outputs.possibleOutboundIpAddresses

@description('The outbound IP addresses the function app uses right now (outboundIpAddresses, a subset of the list above).')
output functionAppCurrentOutboundIpAddresses array = functionApp.outputs.outboundIpAddresses

@description('App storage account name (AzureWebJobsStorage, UCD event store, queues, tables).')
output storageAccountName string = storage.outputs.name

@description('Key Vault name (holds export-secret-key).')
output keyVaultName string = keyVault.outputs.name
