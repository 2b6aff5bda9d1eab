// Log alerts on the exporter's custom metrics (sent by the Python worker through OpenTelemetry
// to Application Insights, table customMetrics; dimensions in customDimensions):
//   export.lag               histogram per scheduler tick (and hourly sweep): now - last_success_end of
//                            each integration looked at; no per-integration series (sev 2)
//   export.poison_messages   counter: export jobs moved to the poison queue  (sev 1)
//   export.credential_errors counter: integrations stopped by bad credentials (sev 3)
// The poison and credential alerts fire per (account, integration_id); the lag alert fires for the fleet
// (the hourly sweep logs which integrations are late). Each mails the action group.

@description('Prefix of the alert and action group names.')
param namePrefix string

@description('Azure region of the alert rules.')
param location string

@description('Tags applied to every resource.')
param tags object = {}

@description('Resource id of the Application Insights component the rules query.')
param appInsightsId string

@description('E-mail address that receives the alerts.')
param alertEmail string

@description('Alert when an integration is this many seconds behind (now - last_success_end).')
@minValue(600)
param lagThresholdSeconds int = 3 * 3600

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: '${namePrefix}-alerts'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'ucdexport'
    enabled: true
    emailReceivers: [
      {
        name: 'export-oncall'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var perIntegration = [
  {
    name: 'account'
    operator: 'Include'
    values: [
      '*'
    ]
  }
  {
    name: 'integration_id'
    operator: 'Include'
    values: [
      '*'
    ]
  }
]

resource lagAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-export-lag'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Export lag above threshold'
    description: 'Some integration has not delivered a window for longer than the threshold (export.lag, the largest a tick or sweep saw). The sweep logs each late integration ("integration is late"); check its status and runs: credential error, paused, or failing jobs.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "export.lag"
| summarize lag_seconds = max(valueMax)
'''
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'lag_seconds'
          operator: 'GreaterThan'
          threshold: lagThresholdSeconds
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-export-poison'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Export jobs moved to the poison queue'
    description: 'An export job failed maxDequeueCount times and landed in export-jobs-poison (export.poison_messages). The integration is re-scheduled by the timer, but a repeating failure needs a look.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "export.poison_messages"
| extend account = tostring(customDimensions.account), integration_id = tostring(customDimensions.integration_id)
| summarize poison_messages = sum(valueSum) by account, integration_id
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'poison_messages'
          dimensions: perIntegration
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

resource credentialAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-export-credential-errors'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Integration stopped by a credential error'
    description: 'A destination refused the stored credentials and the integration is now credential_error (export.credential_errors). Usually the customer must update the connection string.'
    severity: 3
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: '''
customMetrics
| where name == "export.credential_errors"
| extend account = tostring(customDimensions.account), integration_id = tostring(customDimensions.integration_id)
| summarize credential_errors = sum(valueSum) by account, integration_id
'''
          timeAggregation: 'Total'
          metricMeasureColumn: 'credential_errors'
          dimensions: perIntegration
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

@description('Action group resource id.')
output actionGroupId string = actionGroup.id
