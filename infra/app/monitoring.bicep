// Application Insights (workspace-based) backed by a Log Analytics workspace. The Functions host
// and the Python worker (PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true) send logs, traces and
// the exporter's custom metrics (export.lag_seconds, export.poison_messages, ...) here.

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Days the workspace keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Accept only Entra ID (managed identity) authenticated telemetry. The app sends APPLICATIONINSIGHTS_AUTHENTICATION_STRING, which both the Functions host and the Python Azure Monitor exporter honour.')
param disableLocalAuth bool = true

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: disableLocalAuth
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

@description('Application Insights component name.')
output appInsightsName string = appInsights.name

@description('Application Insights component resource id (scope of the alert rules).')
output appInsightsId string = appInsights.id

@description('Log Analytics workspace resource id.')
output workspaceId string = workspace.id
