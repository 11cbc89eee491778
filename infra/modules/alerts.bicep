// Scheduled query alert rules over the collector's tables, their queries loaded from queries/*.kql (the same files as
// the workbook): a root-account access key exists, an active key of a user AWS quarantined, keys newly due for
// rotation, the collector silent, a run failed or partially failed, a new access key, a new long-term API key without
// expiry, a long-term key used from a new source IP, IAM/CloudTrail disagreeing on a key's use and a key created by one
// IAM user for another (the last three read AWSCloudTrail, and return nothing without it). They notify an existing
// action group, a new one that emails alertEmailAddress, both, or none (the alerts still show in the portal).
// The rules query the workspace with the permissions Azure Monitor grants log alerts on their scope; no identity.

param location string
param tags object

@description('Resource id of the Log Analytics workspace holding the two custom tables (the rules\' scope).')
param workspaceResourceId string

@description('Resource id of an existing action group to notify. Empty for none.')
param actionGroupId string = ''

@description('Email address to notify through a new action group. Empty to create none.')
param alertEmailAddress string = ''

// At most 36: the rule must see the newest run record older than the lookback within its two-day window.
@allowed([
  1
  2
  3
  4
  5
  6
  8
  12
  18
  24
  36
])
@description('The collector is silent when no run record arrived within this many hours: twice the schedule (6-hourly: 12).')
param collectorSilentAfterHours int = 12

@allowed([
  1
  2
  3
  4
  5
  6
  8
  12
  18
  24
  36
  48
])
@description('Hours of run records the "run failed" rule looks at: the schedule\'s interval (6-hourly: 6).')
param runFailedWindowHours int = 6

@description('Name prefix of the rules and the action group.')
param namePrefix string

// A scheduled query rule's window (windowSize, the time range its query sees) can only be 5, 10, 15, 30 or 45 minutes,
// 1 to 6 hours, 1 day or 2 days ("Supported granularities are: 5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440,
// 2880"). The "run failed" rule's lookback of N hours gets the smallest window that holds it, and the query itself
// keeps only the last N hours: its `let lookback = ...h;` line is replaced by the parameter's value. The "collector
// silent" rule looks at two days whatever its lookback (see the rule).
var windowSizeOfHours = {
  '1': 'PT1H'
  '2': 'PT2H'
  '3': 'PT3H'
  '4': 'PT4H'
  '5': 'PT5H'
  '6': 'PT6H'
  '8': 'P1D'
  '12': 'P1D'
  '18': 'P1D'
  '24': 'P1D'
  '36': 'P2D'
  '48': 'P2D'
}

var createActionGroup = !empty(alertEmailAddress)
var actionGroups = concat(empty(actionGroupId) ? [] : [
  actionGroupId
], createActionGroup ? [
  emailActionGroup.id
] : [])
var firedOnce = {
  numberOfEvaluationPeriods: 1
  minFailingPeriodsToAlert: 1
}

resource emailActionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (createActionGroup) {
  name: '${namePrefix}-email'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'awsiamkeys'
    enabled: true
    emailReceivers: [
      {
        name: 'collector-alerts'
        emailAddress: alertEmailAddress
        useCommonAlertSchema: true
      }
    ]
  }
}

// Stateful, per account: fires while the account's newest collection shows a root-account access key
// (CIS AWS Foundations Benchmark v7.0.0 2.4, the worst finding), resolved once a collection finds none. Severity 1:
// the root user cannot be restricted by policy.
resource rootKey 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-root-key'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM: root-account access key exists'
    description: 'An AWS account\'s root user has an access key (CIS AWS Foundations Benchmark v7.0.0 2.4) in the newest collection (queries/alert-root-key.kql).'
    severity: 1
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/alert-root-key.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'AccountId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Stateful (autoMitigate): one notification per account when its newest collection has keys that were not due in
// its previous one; resolved once a later collection brings none.
resource rotationDue 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-rotation-due'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM: access keys became due for rotation'
    description: 'Active AWS IAM access keys older than KEY_ROTATION_DAYS appeared in the newest collection (queries/alert-rotation-due-new.kql).'
    severity: 2
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/alert-rotation-due-new.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'AccountId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// The collector reported before and has been silent for twice the schedule: the timer, the app or its delivery stopped.
// The query returns one row when the newest run record it sees is older than the lookback, and none before the first
// run record exists: a fresh deployment, whose AWS side is not done yet, raises no alert. So the rule looks at the
// longest window a log search alert takes (two days): it resolves when a run record arrives, or, after two days of
// silence, when the last record leaves that window (docs/deploy.md).
resource collectorSilent 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-collector-silent'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM key collector: no run record'
    description: 'The collector reported before, and no run record arrived in AwsIamKeyCollectorRuns_CL within ${collectorSilentAfterHours} hours (queries/alert-collector-silent.kql).'
    severity: 1
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    criteria: {
      allOf: [
        {
          query: replace(loadTextContent('../../queries/alert-collector-silent.kql'), 'let lookback = 12h;', 'let lookback = ${collectorSilentAfterHours}h;')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Stateful: fires when a Failed or PartiallySucceeded run lands, resolves after a window with none.
resource runFailed 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-run-failed'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM key collector: run failed or partially failed'
    description: 'A run record with Status Failed or PartiallySucceeded within ${runFailedWindowHours} hours (queries/alert-run-failed.kql).'
    severity: 2
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: windowSizeOfHours[string(runFailedWindowHours)]
    criteria: {
      allOf: [
        {
          query: replace(loadTextContent('../../queries/alert-run-failed.kql'), 'let lookback = 6h;', 'let lookback = ${runFailedWindowHours}h;')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Stateful, per account and user: fires while the account's newest collection has an active key of a user AWS
// quarantined (an AWSCompromisedKeyQuarantine policy attached: AWS found one of the user's keys in public); resolved
// once a collection finds the key deactivated or deleted, or the policy detached. Severity 1: a key is known leaked.
resource quarantined 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-key-quarantined'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM: access key of a user AWS quarantined (exposed in public)'
    description: 'An active access key of a user with an AWSCompromisedKeyQuarantine policy attached, in the newest collection (queries/alert-key-quarantined.kql): AWS found a key of this user in public.'
    severity: 1
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/alert-key-quarantined.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'AccountId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'UserName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Stateful, per account: fires when a run whose record arrived within the hour brought new keys (Created, Rotated in,
// RootKeyAppeared), resolves the next hour: one notification per run that created keys in the account.
resource newKey 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-new-key'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM: new access key created'
    description: 'An access key was created (or rotated in, or a root key appeared) since the account\'s previous collection (queries/alert-new-key.kql).'
    severity: 2
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/alert-new-key.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'AccountId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Stateful, per account: fires when the newest collection has a long-term API key (Amazon Bedrock, CloudWatch Logs)
// without expiry that no earlier collection of the day had, resolves the next hour: a bearer secret that works until
// someone deletes it.
resource apiKeyNoExpiry 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-api-key-no-expiry'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM: new long-term API key without expiry'
    description: 'An active long-term API key (Amazon Bedrock, CloudWatch Logs) created without an expiry appeared in the newest collection (queries/alert-api-key-no-expiry-new.kql).'
    severity: 2
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/alert-api-key-no-expiry-new.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'AccountId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Stateful, per account: a long-term key signed calls from a source IP new for it (AWSCloudTrail joined on the key
// fingerprint). A log alert sees at most 2 days, so here "new" means not seen in the day before; the Sentinel rule
// sees 14 days and the hunting query 30. Returns nothing without AWSCloudTrail in the workspace.
resource newSource 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-new-source'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM: long-term key used from a new source IP'
    description: 'A long-term access key signed calls from a source IP not seen for it before, per AWSCloudTrail (queries/alert-key-new-source.kql).'
    severity: 2
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/alert-key-new-source.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'AccountId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Stateful, per account: IAM and AWSCloudTrail disagree on a key's use in a collection that arrived within the hour.
resource usageMismatch 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-usage-mismatch'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM: key use differs between IAM and CloudTrail'
    description: 'IAM reports a key unused while AWSCloudTrail shows it in use, or the reverse (queries/alert-key-usage-mismatch.kql).'
    severity: 3
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/alert-key-usage-mismatch.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'AccountId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

// Stateful, per account: an access key was created for another user (AWSCloudTrail CreateAccessKey, the creator is not
// the key's user) in an event that reached the workspace within the hour (queries/alert-key-created-for-another-user.kql).
resource keyForAnotherUser 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-key-for-another-user'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'AWS IAM: access key created for another user'
    description: 'A caller created an access key for an IAM user other than itself, per AWSCloudTrail CreateAccessKey (queries/alert-key-created-for-another-user.kql): privilege escalation or persistence unless expected.'
    severity: 2
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/alert-key-created-for-another-user.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'AccountId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: firedOnce
        }
      ]
    }
    autoMitigate: true
    skipQueryValidation: true
    actions: {
      actionGroups: actionGroups
    }
  }
}

output actionGroupIds array = actionGroups
output ruleIds array = [
  rootKey.id
  rotationDue.id
  quarantined.id
  collectorSilent.id
  runFailed.id
  newKey.id
  apiKeyNoExpiry.id
  newSource.id
  usageMismatch.id
  keyForAnotherUser.id
]
