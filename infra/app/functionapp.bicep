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

@description('Client id of the Microsoft Entra app registration that signs console users in (see infra/README.md, "The console"). Empty: App Service Authentication stays off and the console answers that sign-in is not set up; the API is unaffected.')
param consoleClientId string = ''

@description('ARN of the platform\'s AWS principal customers trust for S3 by role (EXPORT_AWS_PRINCIPAL_ARN). Empty: off.')
param keylessAwsPrincipalArn string = ''

@description('Email of the platform\'s Google service account for GCS without a key (EXPORT_GCP_SERVICE_ACCOUNT). Empty: off.')
param keylessGcpServiceAccount string = ''

@description('Client id of the platform\'s multi-tenant Entra application for Azure by Entra ID (EXPORT_AZURE_CLIENT_ID). Empty: off.')
param keylessAzureClientId string = ''

@description('Microsoft Entra tenant of the console app registration.')
param consoleTenantId string = subscription().tenantId

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
  // glibc's malloc arenas for the Python worker: two, so a window resumed over invocations peaks like one
  // (exporter/export/arenas.py sets the same from the code when this is unset; docs/benchmarks.md).
  MALLOC_ARENA_MAX: '2'
  // Keyless destinations: the platform's own identities that customers grant (infra/README.md).
  EXPORT_AWS_PRINCIPAL_ARN: keylessAwsPrincipalArn
  EXPORT_AWS_WEB_IDENTITY: empty(keylessAwsPrincipalArn) ? '' : 'managed-identity'
  EXPORT_AWS_STS_ENDPOINT: ''
  EXPORT_GCP_SERVICE_ACCOUNT: keylessGcpServiceAccount
  EXPORT_GCP_IAM_ENDPOINT: ''
  EXPORT_AZURE_TENANT_ID: tenant().tenantId
  EXPORT_AZURE_CLIENT_ID: keylessAzureClientId
  EXPORT_AZURE_AUTHORITY_HOST: ''
  // App Service Authentication signs console users in with the app registration, proving itself with
  // the app's managed identity (a federated credential) instead of a client secret.
  OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID: identityClientId
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

// The console's sign-in: App Service Authentication with Microsoft Entra ID. Anonymous requests are
// let through (AllowAnonymous) so that function-key API calls keep working; the console itself sends
// a request without a signed-in user to /.auth/login/aad and authorizes every other one against the
// members table (exporter/access.py). The platform strips X-MS-CLIENT-PRINCIPAL* headers sent by
// clients and sets WEBSITE_AUTH_ENABLED, the only condition under which the app believes them.
// The development sign-in of `serve` (EXPORT_CONSOLE_DEV_SIGN_IN) is deliberately never set here.
resource siteAuth 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: !empty(consoleClientId)
    }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
    }
    login: {
      tokenStore: {
        enabled: false
      }
      preserveUrlFragmentsForLogins: false
      allowedExternalRedirectUrls: []
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: !empty(consoleClientId)
        registration: {
          clientId: consoleClientId
          clientSecretSettingName: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'
          openIdIssuer: '${environment().authentication.loginEndpoint}${consoleTenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            'api://${consoleClientId}'
          ]
        }
      }
    }
  }
}

@description('Function app name.')
output name string = site.name

@description('Default host name, e.g. <name>.azurewebsites.net')
output defaultHostName string = site.properties.defaultHostName

@description('Every outbound IP address the app may use (customers allowlist these on their storage firewall).')
output possibleOutboundIpAddresses array = split(site.properties.possibleOutboundIpAddresses, ',')

@description('Outbound IP addresses the app uses right now (a subset of possibleOutboundIpAddresses).')
output outboundIpAddresses array = split(site.properties.outboundIpAddresses, ',')
