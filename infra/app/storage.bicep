// The app's own storage account (AzureWebJobsStorage): the Flex Consumption deployment package,
// the UCD event store (blob container `ucd`), the staging container of split GCS windows
// (`ucd-staging`, with a lifecycle rule), the export job queues and the tables (integrations,
// runs, UCD index and profiles; the app creates the tables itself at start-up).
// Shared key access is disabled: everything, the Functions host included, signs in with the
// user-assigned managed identity.

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Replication of the account. ZRS keeps the event store available through a zone outage where the region has zones.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_LRS'

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Blob container of the UCD event store (must match the UCD_CONTAINER app setting).')
param ucdContainerName string = 'ucd'

@description('Queue of export jobs (must match EXPORT_QUEUE_NAME); its poison queue is `<name>-poison`.')
param exportQueueName string = 'export-jobs'

@description('Days after which a staged part of a split GCS window is deleted if nothing deleted it (an abandoned plan); parts are relayed and deleted within hours.')
@minValue(1)
param stagingExpiryDays int = 7

@description('Days a deleted or overwritten blob stays recoverable (blob soft delete); 0 turns it off.')
@minValue(0)
@maxValue(365)
param blobSoftDeleteDays int = 7

resource storage 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: blobSoftDeleteDays > 0
      days: blobSoftDeleteDays > 0 ? blobSoftDeleteDays : null
    }
    containerDeleteRetentionPolicy: {
      enabled: blobSoftDeleteDays > 0
      days: blobSoftDeleteDays > 0 ? blobSoftDeleteDays : null
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = [for containerName in [
  deploymentContainerName
  ucdContainerName
  '${ucdContainerName}-staging'
]: {
  parent: blobService
  name: containerName
  properties: {
    publicAccess: 'None'
  }
}]

// A split GCS window's parts wait in `<ucd>-staging` until one worker relays them into the file, then
// are deleted (exporter/jobs/relay.py), as a continued Parquet file's block notes are after its window
// (exporter/export/progress.py); what an abandoned plan or window leaves (a deleted integration, a plan
// started again) is removed by this rule.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2024-01-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'staged-parts'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${ucdContainerName}-staging/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: stagingExpiryDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2024-01-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' = [for queueName in [
  exportQueueName
  '${exportQueueName}-poison'
]: {
  parent: queueService
  name: queueName
}]

// Tables are created by the app at runtime (names carry EXPORT_TABLE_PREFIX); the service must exist.
resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2024-01-01' = {
  parent: storage
  name: 'default'
}

@description('Storage account name.')
output name string = storage.name

@description('Storage account resource id.')
output id string = storage.id

@description('Blob service endpoint, e.g. https://<name>.blob.core.windows.net/')
output blobEndpoint string = storage.properties.primaryEndpoints.blob

@description('Queue service endpoint.')
output queueEndpoint string = storage.properties.primaryEndpoints.queue

@description('Table service endpoint.')
output tableEndpoint string = storage.properties.primaryEndpoints.table
