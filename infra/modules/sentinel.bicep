// Microsoft Sentinel, natively: every alert of the product (infra/modules/alerts.bicep) also as a scheduled analytics
// rule, with entity mappings (account: user name + AWS account id, and ARN; IP), and hunting queries: the kill-first
// list and the AWSCloudTrail usage join.
// Every query is a file of queries/ loaded unchanged, as the workbook and the Azure Monitor alerts load them.
// Nothing here is deployed unless sentinelWorkspace is true. A workspace this deployment creates is onboarded to
// Microsoft Sentinel here (onboardingStates/default, before any rule: an alert rule on a workspace that is not
// onboarded is refused, "not onboarded to Microsoft Sentinel"). An existing workspace must already be onboarded: it is
// not onboarded here, because onboarding starts Microsoft Sentinel billing on it and a workspace with a customer-managed
// key is onboarded through the REST API only, neither of which a collector's deployment should decide. Deployed in the
// workspace's resource group (the rules are extension resources of the workspace, the hunting queries its saved
// searches).
//
// Sentinel rules are stateless: a rule alerts on every run whose query returns rows. The event-like queries report
// what arrived within their report window (1 hour, the rules' frequency), so each new key, new source or mismatch is
// alerted once; the state-like ones (root key, quarantined key, rotation due, collector silent) repeat while the state lasts and land
// in one incident per entity through incident grouping.

@description('The workspace is a Microsoft Sentinel workspace: deploy the analytics rules and hunting queries. Off by default: nothing Sentinel-specific is deployed.')
param sentinelWorkspace bool = false

@description('Name of the Log Analytics workspace (onboarded to Microsoft Sentinel) holding the collector\'s tables and AWSCloudTrail.')
param workspaceName string

@minValue(1)
@maxValue(36)
@description('The collector is silent when no run record arrived within this many hours: twice the schedule (6-hourly: 12).')
param collectorSilentAfterHours int = 12

@minValue(1)
@maxValue(48)
@description('Hours of run records the "run failed" rule looks at: the schedule\'s interval (6-hourly: 6).')
param runFailedWindowHours int = 6

@description('Onboard the workspace to Microsoft Sentinel: true for a workspace this deployment creates; false for an existing workspace, which must already be onboarded.')
param onboardWorkspace bool = false

@description('Create an incident from each alert (grouped per entity for a day). False: alerts only.')
param createIncidents bool = true

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: workspaceName
}

// Microsoft Sentinel on the workspace: the one resource that makes it a Sentinel workspace (Microsoft's own onboarding
// template, Azure/Azure-Sentinel Tools/ARM-Templates/Onboarding, PUTs 'default' with empty properties).
resource onboarding 'Microsoft.SecurityInsights/onboardingStates@2025-09-01' = if (sentinelWorkspace && onboardWorkspace) {
  scope: workspace
  name: 'default'
  properties: {}
}

// The account entity of a key's user, strong and unique across AWS accounts: Name + UPNSuffix (one of Sentinel's
// strong identifier pairs) as user name + the AWS account id, so two same-named users of different AWS accounts are
// two entities and their alerts never merge; FullName carries the ARN (which also holds the account id). A user name
// alone (or the renamable, non-unique AWS account name) is weak: alerts of different accounts merged on it, and a
// playbook matching by it could act in the wrong account (docs/insight.md, "Entities and playbooks"). AWS has no Entra
// object id to map. Sentinel takes at most three identifiers per entity.
var userEntity = {
  entityType: 'Account'
  fieldMappings: [
    {
      identifier: 'Name'
      columnName: 'UserName'
    }
    {
      identifier: 'UPNSuffix'
      columnName: 'AccountId'
    }
    {
      identifier: 'FullName'
      columnName: 'UserArn'
    }
  ]
}
var keyDetails = {
  AwsAccountId: 'AccountId'
  AwsAccountName: 'AccountName'
  AccessKey: 'AccessKeyId'
}

// One entry per alert of the product: its query file, how often it runs and over what period, and how it maps to
// entities. frequency <= period <= P14D (Sentinel's limits).
var rules = [
  {
    id: 'root-key'
    displayName: 'AWS IAM: root-account access key exists'
    description: 'An AWS account\'s root user has an access key (CIS AWS Foundations Benchmark v7.0.0 2.4) in the newest collection (queries/alert-root-key.kql). A standing finding: reported daily while it lasts.'
    severity: 'High'
    query: loadTextContent('../../queries/alert-root-key.kql')
    frequency: 'P1D'
    period: 'P1D'
    operator: 'GreaterThan'
    threshold: 0
    perResult: true
    tactics: [
      'PrivilegeEscalation'
      'Persistence'
    ]
    techniques: [
      'T1078'
    ]
    // The root user (UserName <root_account>) of the AWS account id, ARN arn:aws:iam::<id>:root.
    entities: [
      userEntity
    ]
    details: {
      AwsAccountId: 'AccountId'
      KeyStatus: 'Status'
      AgeDays: 'AgeDays'
    }
    nameFormat: 'AWS account {{AccountId}} has a root access key'
  }
  {
    id: 'key-quarantined'
    displayName: 'AWS IAM: access key of a user AWS quarantined (exposed in public)'
    description: 'An active access key of a user with an AWSCompromisedKeyQuarantine policy attached (V1, V2 or V3) in the newest collection (queries/alert-key-quarantined.kql): AWS found one of the user\'s keys in public. Kill it first; RiskScore and RiskReasons rank it against the rest (queries/kill-first.kql). A standing finding: reported daily while it lasts.'
    severity: 'High'
    query: loadTextContent('../../queries/alert-key-quarantined.kql')
    frequency: 'PT1H'
    period: 'P1D'
    operator: 'GreaterThan'
    threshold: 0
    perResult: true
    tactics: [
      'CredentialAccess'
      'InitialAccess'
    ]
    techniques: [
      'T1552'
      'T1078'
    ]
    entities: [
      userEntity
    ]
    details: union(keyDetails, {
      Privileged: 'Privileged'
      RiskScore: 'RiskScore'
      RiskReasons: 'RiskReasons'
    })
    nameFormat: 'AWS access key {{AccessKeyId}} of quarantined user {{UserName}} (account {{AccountId}})'
  }
  {
    id: 'rotation-due'
    displayName: 'AWS IAM: access keys became due for rotation'
    description: 'Active AWS IAM access keys older than KEY_ROTATION_DAYS appeared in the newest collection (queries/alert-rotation-due-new.kql).'
    severity: 'Low'
    query: loadTextContent('../../queries/alert-rotation-due-new.kql')
    frequency: 'PT1H'
    period: 'P1D'
    operator: 'GreaterThan'
    threshold: 0
    perResult: true
    tactics: [
      'CredentialAccess'
    ]
    techniques: [
      'T1078'
    ]
    entities: [
      userEntity
    ]
    details: {
      AwsAccountId: 'AccountId'
      AccessKey: 'AccessKeyId'
      AgeDays: 'AgeDays'
    }
    nameFormat: 'AWS access key {{AccessKeyId}} of {{UserName}} is due for rotation'
  }
  {
    id: 'collector-silent'
    displayName: 'AWS IAM key collector: no run record'
    description: 'The collector reported before, and no run record arrived in AwsIamKeyCollectorRuns_CL within ${collectorSilentAfterHours} hours (queries/alert-collector-silent.kql): the timer, the app or its delivery stopped. Nothing before the first run record.'
    severity: 'Medium'
    // The query keeps its own lookback (as in alerts.bicep): set to the parameter, not the file's default.
    query: replace(loadTextContent('../../queries/alert-collector-silent.kql'), 'let lookback = 12h;', 'let lookback = ${collectorSilentAfterHours}h;')
    frequency: 'PT1H'
    // The query must see the newest run record to tell "silent since" from "never ran": the longest period a rule
    // takes, so that it keeps reporting a silent collector for 14 days.
    period: 'P14D'
    operator: 'GreaterThan'
    threshold: 0
    perResult: false
    tactics: [
      'DefenseEvasion'
    ]
    techniques: [
      'T1562'
    ]
    entities: []
    details: {}
    nameFormat: ''
  }
  {
    id: 'run-failed'
    displayName: 'AWS IAM key collector: run failed or partially failed'
    description: 'A run record with Status Failed or PartiallySucceeded within ${runFailedWindowHours} hours (queries/alert-run-failed.kql).'
    severity: 'Low'
    query: replace(loadTextContent('../../queries/alert-run-failed.kql'), 'let lookback = 6h;', 'let lookback = ${runFailedWindowHours}h;')
    // frequency = period: each run record is looked at once
    frequency: 'PT${runFailedWindowHours}H'
    period: 'PT${runFailedWindowHours}H'
    operator: 'GreaterThan'
    threshold: 0
    perResult: false
    tactics: [
      'DefenseEvasion'
    ]
    techniques: [
      'T1562'
    ]
    entities: []
    details: {}
    nameFormat: ''
  }
  {
    id: 'new-key'
    displayName: 'AWS IAM: new access key created'
    description: 'An access key was created (or rotated in, or a root key appeared) since the account\'s previous collection (queries/alert-new-key.kql): an attacker\'s favourite persistence in AWS.'
    severity: 'Medium'
    query: loadTextContent('../../queries/alert-new-key.kql')
    frequency: 'PT1H'
    period: 'P2D'
    operator: 'GreaterThan'
    threshold: 0
    perResult: true
    tactics: [
      'Persistence'
    ]
    techniques: [
      'T1098'
    ]
    entities: [
      userEntity
    ]
    details: union(keyDetails, {
      Change: 'EventType'
    })
    nameFormat: 'AWS access key {{AccessKeyId}} created for {{UserName}} ({{EventType}})'
  }
  {
    id: 'api-key-no-expiry'
    displayName: 'AWS IAM: new long-term API key without expiry'
    description: 'An active long-term API key (Amazon Bedrock, CloudWatch Logs) created without an expiry appeared in the newest collection (queries/alert-api-key-no-expiry-new.kql): a bearer secret that works until someone deletes it, and persistence an attacker can create with iam:CreateServiceSpecificCredential.'
    severity: 'Medium'
    query: loadTextContent('../../queries/alert-api-key-no-expiry-new.kql')
    frequency: 'PT1H'
    period: 'P1D'
    operator: 'GreaterThan'
    threshold: 0
    perResult: true
    tactics: [
      'Persistence'
      'CredentialAccess'
    ]
    techniques: [
      'T1098'
    ]
    entities: [
      userEntity
    ]
    details: {
      AwsAccountId: 'AccountId'
      AwsAccountName: 'AccountName'
      Service: 'Service'
      Credential: 'CredentialId'
    }
    nameFormat: 'AWS API key {{CredentialId}} without expiry for {{UserName}} ({{Service}})'
  }
  {
    id: 'new-source'
    displayName: 'AWS IAM: long-term key used from a new source IP'
    description: 'A long-term access key signed calls from a source IP (and maybe a country) not seen for it before, per AWSCloudTrail joined on the key fingerprint (queries/alert-key-new-source.kql). As a rule the baseline is the 14 days Sentinel lets a rule look back, not 30.'
    severity: 'Medium'
    query: loadTextContent('../../queries/alert-key-new-source.kql')
    frequency: 'PT1H'
    period: 'P14D'
    operator: 'GreaterThan'
    threshold: 0
    perResult: true
    tactics: [
      'InitialAccess'
      'CredentialAccess'
    ]
    techniques: [
      'T1078'
    ]
    entities: [
      userEntity
      {
        entityType: 'IP'
        fieldMappings: [
          {
            identifier: 'Address'
            columnName: 'SourceIpAddress'
          }
        ]
      }
    ]
    details: union(keyDetails, {
      Country: 'Country'
      NewCountry: 'NewCountry'
      Reason: 'Reason'
    })
    nameFormat: 'AWS access key {{AccessKeyId}} of {{UserName}} used from new IP {{SourceIpAddress}}'
  }
  {
    id: 'usage-mismatch'
    displayName: 'AWS IAM: key use differs between IAM and CloudTrail'
    description: 'IAM reports a key unused while AWSCloudTrail shows it in use, or IAM reports use that AWSCloudTrail does not have (a trail gap) (queries/alert-key-usage-mismatch.kql).'
    severity: 'Low'
    query: loadTextContent('../../queries/alert-key-usage-mismatch.kql')
    frequency: 'PT1H'
    period: 'P2D'
    operator: 'GreaterThan'
    threshold: 0
    perResult: true
    tactics: [
      'DefenseEvasion'
    ]
    techniques: [
      'T1562'
    ]
    entities: [
      userEntity
    ]
    details: union(keyDetails, {
      Mismatch: 'Mismatch'
    })
    nameFormat: 'AWS access key {{AccessKeyId}} of {{UserName}}: {{Mismatch}}'
  }
  {
    id: 'key-for-another-user'
    displayName: 'AWS IAM: access key created for another user'
    description: 'A caller created an access key for an IAM user other than itself, per AWSCloudTrail CreateAccessKey (queries/alert-key-created-for-another-user.kql): privilege escalation or persistence unless expected. The account entity is the key\'s user; the creator is in the details.'
    severity: 'Medium'
    query: loadTextContent('../../queries/alert-key-created-for-another-user.kql')
    frequency: 'PT1H'
    period: 'P2D'
    operator: 'GreaterThan'
    threshold: 0
    perResult: true
    tactics: [
      'PrivilegeEscalation'
      'Persistence'
    ]
    techniques: [
      'T1098'
    ]
    entities: [
      {
        entityType: 'Account'
        fieldMappings: [
          {
            identifier: 'Name'
            columnName: 'UserName'
          }
          {
            identifier: 'UPNSuffix'
            columnName: 'AccountId'
          }
        ]
      }
      {
        entityType: 'IP'
        fieldMappings: [
          {
            identifier: 'Address'
            columnName: 'SourceIpAddress'
          }
        ]
      }
    ]
    details: {
      AwsAccountId: 'AccountId'
      AccessKey: 'AccessKeyId'
      Creator: 'CreatorArn'
      CreatorType: 'CreatorType'
    }
    nameFormat: 'AWS access key {{AccessKeyId}} created for {{UserName}} by another identity'
  }
]

// Without sentinelWorkspace the loops run over nothing: no rule, no hunting query.
var deployedRules = sentinelWorkspace ? rules : []
var deployedHuntingQueries = sentinelWorkspace ? huntingQueries : []

resource analyticsRules 'Microsoft.SecurityInsights/alertRules@2025-09-01' = [for rule in deployedRules: {
  scope: workspace
  name: guid(workspace.id, 'aws-iam-keys', rule.id)
  kind: 'Scheduled'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    query: rule.query
    queryFrequency: rule.frequency
    queryPeriod: rule.period
    triggerOperator: rule.operator
    triggerThreshold: rule.threshold
    suppressionEnabled: false
    suppressionDuration: 'PT1H'
    tactics: rule.tactics
    techniques: rule.techniques
    entityMappings: empty(rule.entities) ? null : rule.entities
    customDetails: empty(rule.details) ? null : rule.details
    alertDetailsOverride: empty(rule.nameFormat) ? null : {
      alertDisplayNameFormat: rule.nameFormat
    }
    eventGroupingSettings: {
      aggregationKind: rule.perResult ? 'AlertPerResult' : 'SingleAlert'
    }
    incidentConfiguration: {
      createIncident: createIncidents
      groupingConfiguration: {
        enabled: true
        reopenClosedIncident: false
        lookbackDuration: 'P1D'
        matchingMethod: 'AllEntities'
      }
    }
  }
  // A rule on a workspace that is not onboarded is refused: onboarding first.
  dependsOn: [
    onboarding
  ]
}]

// Hunting queries: the usage join, and the new-source and mismatch alerts over the last week instead of the rules'
// hour (the new-source query with its full 30-day baseline, which a rule cannot have).
var huntingFrom = 'let reportWindow = 1h;'
var huntingTo = 'let reportWindow = 7d;'
var huntingQueries = [
  {
    id: 'kill-first'
    displayName: 'AWS IAM: access keys to kill first'
    description: 'The active keys of the latest snapshot ranked by RiskScore (0-100: quarantined, root, admin-equivalent user, console without MFA, unused, rotation due, never used, second key, made at user setup), each with its RiskReasons (queries/kill-first.kql).'
    query: loadTextContent('../../queries/kill-first.kql')
    tactics: 'CredentialAccess,PrivilegeEscalation'
    techniques: 'T1078'
  }
  {
    id: 'key-usage'
    displayName: 'AWS IAM: where each access key is used from'
    description: 'Per access key of the latest snapshot: the calls AWSCloudTrail logged for it, source IPs, countries, networks, user agents, services, regions, error rate, first and last seen (queries/key-usage.kql).'
    query: loadTextContent('../../queries/key-usage.kql')
    tactics: 'InitialAccess,CredentialAccess'
    techniques: 'T1078'
  }
  {
    id: 'key-new-source'
    displayName: 'AWS IAM: long-term keys used from a new source IP (30-day baseline)'
    description: 'Long-term keys that signed calls from an IP not seen for them in the previous 30 days, new within the last 7 days (queries/alert-key-new-source.kql).'
    query: replace(loadTextContent('../../queries/alert-key-new-source.kql'), huntingFrom, huntingTo)
    tactics: 'InitialAccess,CredentialAccess'
    techniques: 'T1078'
  }
  {
    id: 'key-usage-mismatch'
    displayName: 'AWS IAM: key use differs between IAM and CloudTrail'
    description: 'Keys IAM reports unused that AWSCloudTrail shows in use, and the reverse, in the collections of the last 2 days (queries/alert-key-usage-mismatch.kql).'
    query: replace(loadTextContent('../../queries/alert-key-usage-mismatch.kql'), huntingFrom, huntingTo)
    tactics: 'DefenseEvasion'
    techniques: 'T1562'
  }
]

resource hunting 'Microsoft.OperationalInsights/workspaces/savedSearches@2023-09-01' = [for hunt in deployedHuntingQueries: {
  parent: workspace
  name: 'aws-iam-keys-${hunt.id}'
  properties: {
    category: 'Hunting Queries'
    displayName: hunt.displayName
    query: hunt.query
    version: 2
    tags: [
      {
        name: 'description'
        value: hunt.description
      }
      {
        name: 'tactics'
        value: hunt.tactics
      }
      {
        name: 'techniques'
        value: hunt.techniques
      }
    ]
  }
}]

output ruleIds array = [for (rule, i) in deployedRules: analyticsRules[i].id]
output huntingQueryIds array = [for (hunt, i) in deployedHuntingQueries: hunting[i].id]
