// AWS IAM access-key collector: the whole Azure side, provisioned by `azd up`.
// Names: abbreviations.json + a resourceToken; every resource tagged azd-env-name, the Function App azd-service-name.
// App settings, tables and streams follow shared/contract.md; tests/contract/test_infra.py checks this file against the code.

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the resource token and the azd-env-name tag.')
param environmentName string

// The regions that offer the Flex Consumption plan (`az functionapp list-flexconsumption-locations`; the list of
// Microsoft's Functions azd quickstarts, Azure-Samples/functions-quickstart-python-http-azd, without the canary
// region eastus2euap). tests/contract/test_service_rules.py keeps this list and the documented one equal.
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@description('Region of every resource (one that offers the Flex Consumption plan).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the user running azd (AZURE_PRINCIPAL_ID): granted Key Vault Secrets Officer to put the AWS key into the vault. Empty to grant nothing.')
param principalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Kind of principalId (ServicePrincipal when a pipeline runs azd).')
param principalType string = 'User'

@description('Name of the resource group to create; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('Resource id of an existing Log Analytics workspace to use instead of creating one (the tables are added to it).')
param existingLogAnalyticsWorkspaceId string = ''

@minValue(30)
@maxValue(730)
@description('Retention of a new workspace and of the two custom tables, in days.')
param logRetentionInDays int = 90

@description('COLLECTOR_SCHEDULE: NCRONTAB schedule of the timer trigger.')
param collectorSchedule string = '0 0 */6 * * *'

@allowed([
  'access_key'
  'web_identity'
])
@description('AWS_AUTH_MODE: access_key (IAM user key from Key Vault) or web_identity (managed-identity token, no AWS secret).')
param awsAuthMode string = 'access_key'

@description('AWS_ROLE_ARN: ARN of the home role (output HomeRoleArn of infra/aws/home-account.yaml). Empty until the AWS stack exists.')
param awsRoleArn string = ''

@description('AWS_EXTERNAL_ID: the ExternalId of the home role\'s trust policy (access_key mode). Empty: one derived from the subscription and environment (output AWS_EXTERNAL_ID, the AWS stack\'s ExternalId).')
param awsExternalId string = ''

@description('AWS_ACCESS_KEY_ID_SECRET: Key Vault secret name of the IAM user\'s access key id.')
param awsAccessKeyIdSecretName string = 'aws-access-key-id'

@description('AWS_SECRET_ACCESS_KEY_SECRET: Key Vault secret name of the IAM user\'s secret access key.')
param awsSecretAccessKeySecretName string = 'aws-secret-access-key'

@description('AWS_WEB_IDENTITY_AUDIENCE: audience of the managed-identity token (web_identity mode): the Application ID URI of the collector\'s own Entra application, which the preprovision hook (infra/hooks/entra-app.sh) creates and sets; the AWS OIDC provider\'s client id.')
param awsWebIdentityAudience string = ''

@description('AWS_ACCOUNTS: home, organization, or a comma-separated list of 12-digit account ids.')
param awsAccounts string = 'home'

@description('AWS_MEMBER_ROLE_NAME: role assumed in every other account (infra/aws/member-account.yaml).')
param awsMemberRoleName string = 'AwsIamKeyCollector'

@description('AWS_REGION: region of the STS endpoint.')
param awsRegion string = 'us-east-1'

// The file sink writes to the instance's local disk, which nobody reads and the next scale-in deletes: not offered here.
@allowed([
  'logs_ingestion'
  'data_collector'
])
@description('LOG_SINK: logs_ingestion (default) or data_collector: the HTTP Data Collector API, which Microsoft retired on 2026-09-14; refused unless enableLegacyDataCollector is true, for a workspace that still accepts it.')
param logSink string = 'logs_ingestion'

@description('The retired HTTP Data Collector API (retired by Microsoft on 2026-09-14), for a workspace that still accepts it: the explicit opt-in that logSink data_collector needs. Turns the workspace\'s shared keys back on (a new workspace), writes its shared key into Key Vault and sets LOG_ANALYTICS_WORKSPACE_ID. Off by default: then no workspace key exists anywhere.')
param enableLegacyDataCollector bool = false

@description('LOG_ANALYTICS_WORKSPACE_KEY_SECRET: Key Vault secret name of the workspace shared key (legacy sink).')
param logAnalyticsWorkspaceKeySecretName string = 'log-analytics-workspace-key'

@description('LOG_ANALYTICS_DOMAIN: Data Collector domain (sovereign clouds).')
param logAnalyticsDomain string = 'ods.opinsights.azure.com'

@description('FILE_SINK_DIR: folder of the file sink.')
param fileSinkDir string = 'out'

@minValue(1)
@maxValue(3650)
@description('KEY_ROTATION_DAYS: an Active key older than this is RotationDue.')
param keyRotationDays int = 90

@minValue(1)
@maxValue(3650)
@description('KEY_UNUSED_DAYS: an Active key unused for longer than this is Unused.')
param keyUnusedDays int = 45

@minValue(1)
@maxValue(64)
@description('COLLECTOR_ACCOUNT_CONCURRENCY: accounts collected at the same time.')
param accountConcurrency int = 32

@minValue(1)
@maxValue(32)
@description('COLLECTOR_IAM_CONCURRENCY: IAM calls at the same time within one account.')
param iamConcurrency int = 24

@minValue(0)
@maxValue(1000)
@description('COLLECTOR_IAM_MAX_CALLS_PER_SECOND: cap of IAM calls per second per account (retries included); 0: no cap.')
param iamMaxCallsPerSecond int = 0

@description('OUTBOX_CONTAINER: blob container (in the app\'s own storage account) for records a sink could not deliver.')
param outboxContainer string = 'collector-outbox'

@minValue(1000)
@maxValue(10000000)
@description('OUTBOX_MAX_RECORDS: most undelivered records kept; past it the oldest are dropped, with a logged count.')
param outboxMaxRecords int = 500000

@minValue(1)
@maxValue(720)
@description('OUTBOX_MAX_AGE_HOURS: undelivered records older than this are dropped, with a logged count.')
param outboxMaxAgeHours int = 48

@description('OWNER_TAG_KEYS: IAM user tag keys read, in order, for a key\'s owner.')
param ownerTagKeys string = 'owner,Owner,email,contact'

@allowed([
  'file'
  'blob'
])
@description('EXCEPTIONS_SOURCE: file (EXCEPTIONS_FILE, shipped with the app) or blob (EXCEPTIONS_BLOB in EXCEPTIONS_CONTAINER of the app\'s own storage, read at each run: no release to accept a risk).')
param exceptionsSource string = 'file'

@description('EXCEPTIONS_CONTAINER: the blob container (in the app\'s own storage) of the exceptions blob.')
param exceptionsContainer string = 'collector-config'

@description('EXCEPTIONS_FILE: the reviewed exceptions file, relative to the app (docs/exceptions.md); empty: none.')
param exceptionsFile string = 'exceptions.json'

@minValue(1)
@maxValue(730)
@description('EXCEPTIONS_MAX_DAYS: furthest an exception may expire ahead of today.')
param exceptionsMaxDays int = 365

@description('NOTIFY_SCHEDULE: NCRONTAB schedule of the owner-digest function (daily).')
param notifySchedule string = '0 0 7 * * *'

@allowed([
  'off'
  'dry_run'
  'send'
])
@description('NOTIFY_MODE: owner digests off, dry_run (written to the log, nothing sent) or send (e-mailed through Azure Communication Services).')
param notifyMode string = 'dry_run'

@description('NOTIFY_FALLBACK_RECIPIENT: e-mail address that gets the digest of keys without an owner; empty: not sent.')
param notifyFallbackRecipient string = ''

@description('Owner digests: where Azure Communication Services stores its data at rest (e.g. United States, Europe, UK).')
param notifyDataLocation string = 'United States'

@minValue(40)
@maxValue(1000)
@description('Maximum instance count of the Flex Consumption app: 40 (the lowest maximum Flex Consumption accepts) to 1000.')
param maximumInstanceCount int = 40

@description('Alerts: resource id of an existing action group to notify. Empty for none.')
param alertActionGroupId string = ''

@description('Alerts: email address notified through a new action group. Empty to create none.')
param alertEmailAddress string = ''

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
@description('Alerts: the collector is silent when no run record arrived within this many hours (twice the schedule); at most 36, inside the rule\'s two-day window.')
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
@description('Alerts: hours of run records the run-failed rule looks at (the schedule\'s interval).')
param runFailedWindowHours int = 6

@description('Key Vault purge protection. Off by default: with it on, `azd down` leaves the vault name taken for 90 days and the next `azd up` of the environment fails ("exists in deleted state"). Turn it on for a long-lived production vault.')
param enableKeyVaultPurgeProtection bool = false

@description('Network isolation: a virtual network with a delegated subnet for the app, private endpoints (and private DNS zones) for the storage account\'s blobs and for Key Vault, whose public access is then closed.')
param vnetEnabled bool = false

@description('vnetEnabled only: comma-separated public IP addresses or CIDR ranges (e.g. your workstation\'s) that may still reach Key Vault, to put the AWS key there in access_key mode. Empty: none.')
param keyVaultAllowedIpRanges string = ''

@description('Microsoft Sentinel: also deploy every alert as a Sentinel analytics rule, and hunting queries for the AWSCloudTrail usage join. A new workspace is onboarded to Microsoft Sentinel (which starts its Sentinel billing); an existing workspace (existingLogAnalyticsWorkspaceId) must already be onboarded. Off by default: nothing Sentinel-specific is deployed.')
param sentinelWorkspace bool = false

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'

var useExistingWorkspace = !empty(existingLogAnalyticsWorkspaceId)
var workspaceSubscriptionId = useExistingWorkspace ? split(existingLogAnalyticsWorkspaceId, '/')[2] : subscription().subscriptionId
var workspaceResourceGroupName = useExistingWorkspace ? split(existingLogAnalyticsWorkspaceId, '/')[4] : rg.name
var workspaceName = useExistingWorkspace ? last(split(existingLogAnalyticsWorkspaceId, '/')) : logAnalytics.outputs.name
var workspaceResourceId = useExistingWorkspace ? existingLogAnalyticsWorkspaceId : logAnalytics.outputs.id

// The workspace's region: a data collection rule (and its endpoint) must be in the region of the workspace it sends
// to, which for an existing workspace may differ from the deployment's.
resource existingWorkspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = if (useExistingWorkspace) {
  name: useExistingWorkspace ? last(split(existingLogAnalyticsWorkspaceId, '/')) : 'none'
  scope: resourceGroup(workspaceSubscriptionId, useExistingWorkspace ? split(existingLogAnalyticsWorkspaceId, '/')[4] : 'none')
}
var workspaceLocation = useExistingWorkspace ? existingWorkspace.location : location

// Combinations that deploy cleanly and then fail every run are refused before anything is created.
var webIdentity = awsAuthMode == 'web_identity'
var sharedTokenExchangeAudience = 'api://AzureADTokenExchange'
var guardWebIdentityAudience = webIdentity && (empty(awsWebIdentityAudience) || toLower(awsWebIdentityAudience) == toLower(sharedTokenExchangeAudience)) ? fail('awsAuthMode web_identity needs awsWebIdentityAudience (AWS_WEB_IDENTITY_AUDIENCE) set to the Application ID URI of the collector\'s own Entra application, which the azd preprovision hook infra/hooks/entra-app.sh creates; ${sharedTokenExchangeAudience} is Entra\'s shared token-exchange audience, whose v2 tokens match no OIDC provider for https://sts.windows.net/<tenant>/ (docs/deploy.md).') : true
var guardLegacySink = logSink == 'data_collector' && !enableLegacyDataCollector ? fail('logSink data_collector (LOG_SINK) is the HTTP Data Collector API, which Microsoft retired on 2026-09-14: use logSink logs_ingestion. Only for a workspace that still accepts it, set enableLegacyDataCollector true (ENABLE_LEGACY_DATA_COLLECTOR), which turns the workspace\'s shared keys back on and puts its key into Key Vault (docs/deploy.md).') : true
// KEY_VAULT_ALLOWED_IP_RANGES as written by a person ("203.0.113.7/32, 198.51.100.0/24,"): each entry trimmed, empty
// ones dropped, so that a space or a trailing comma neither reaches the vault's firewall nor counts as an address.
var keyVaultAllowedIps = filter(map(split(keyVaultAllowedIpRanges, ','), entry => trim(entry)), entry => !empty(entry))
var guardVnetKeyVault = vnetEnabled && !webIdentity && empty(keyVaultAllowedIps) ? fail('vnetEnabled with awsAuthMode access_key closes Key Vault to the internet: set keyVaultAllowedIpRanges (KEY_VAULT_ALLOWED_IP_RANGES) to the address you put the AWS key from, or use web_identity.') : true
// The resource group, created first, carries these tags: reading the guards there refuses a combination that cannot
// work before anything is created.
var checkedTags = guardWebIdentityAudience && guardLegacySink && guardVnetKeyVault ? tags : tags

// access_key mode: the ExternalId of the home role's trust; when none is given, one derived from the subscription and
// the environment (stable across provisions), output as AWS_EXTERNAL_ID for the AWS stack.
var effectiveExternalId = webIdentity ? '' : (!empty(awsExternalId) ? awsExternalId : guid(subscription().id, environmentName, 'aws-external-id'))

// The contract's tables and streams (shared/contract.md). The columns are declared once, here, for both the tables
// and the data collection rule; tests/contract/test_infra.py checks them against shared/records.py (KeyRecord, RunRecord).
var keysTableName = 'AwsIamAccessKeys_CL'
var runsTableName = 'AwsIamKeyCollectorRuns_CL'
var keysStreamName = 'Custom-AwsIamAccessKeys'
var runsStreamName = 'Custom-AwsIamKeyCollectorRuns'
// The owner-digest runs' own table (shared/records.py DigestRunRecord; docs/contract.md, additions of 2026-12-04).
var digestRunsTableName = 'AwsIamOwnerDigestRuns_CL'
var digestRunsStreamName = 'Custom-AwsIamOwnerDigestRuns'
// The long-lived credentials other than access keys (CredentialRecord): no setting names its stream, the records do.
var credentialsTableName = 'AwsIamCredentials_CL'
var credentialsStreamName = 'Custom-AwsIamCredentials'
var keyColumns = [
  { name: 'TimeGenerated', type: 'datetime' }
  { name: 'RunId', type: 'string' }
  { name: 'AccountId', type: 'string' }
  { name: 'AccountName', type: 'string' }
  { name: 'UserName', type: 'string' }
  { name: 'UserArn', type: 'string' }
  { name: 'AccessKeyId', type: 'string' }
  { name: 'AccessKeyFingerprint', type: 'string' }
  { name: 'Status', type: 'string' }
  { name: 'CreatedAt', type: 'datetime' }
  { name: 'LastUsedAt', type: 'datetime' }
  { name: 'LastUsedRegion', type: 'string' }
  { name: 'LastUsedService', type: 'string' }
  { name: 'LastUsedAsOf', type: 'datetime' }
  { name: 'AgeDays', type: 'int' }
  { name: 'DaysSinceLastUse', type: 'int' }
  { name: 'NeverUsed', type: 'boolean' }
  { name: 'RotationDue', type: 'boolean' }
  { name: 'Unused', type: 'boolean' }
  { name: 'UserActiveKeyCount', type: 'int' }
  { name: 'IsRootKey', type: 'boolean' }
  { name: 'Owner', type: 'string' }
  { name: 'Excepted', type: 'boolean' }
  { name: 'ExceptionReason', type: 'string' }
  { name: 'ExceptionExpires', type: 'datetime' }
  { name: 'Privileged', type: 'boolean' }
  { name: 'PrivilegeReasons', type: 'string' }
  { name: 'Quarantined', type: 'boolean' }
  { name: 'ConsoleWithoutMfa', type: 'boolean' }
  { name: 'KeyAtUserSetup', type: 'boolean' }
  { name: 'Description', type: 'string' }
  { name: 'RiskScore', type: 'int' }
  { name: 'RiskReasons', type: 'string' }
]
var runColumns = [
  { name: 'TimeGenerated', type: 'datetime' }
  { name: 'RunId', type: 'string' }
  { name: 'Status', type: 'string' }
  { name: 'AuthMode', type: 'string' }
  { name: 'Sink', type: 'string' }
  { name: 'AccountsTotal', type: 'int' }
  { name: 'AccountsSucceeded', type: 'int' }
  { name: 'AccountsFailed', type: 'int' }
  { name: 'FailedAccounts', type: 'string' }
  { name: 'KeysCollected', type: 'int' }
  { name: 'DurationSeconds', type: 'real' }
  { name: 'CollectorVersion', type: 'string' }
  { name: 'RecordsDeferred', type: 'int' }
  { name: 'RecordsReplayed', type: 'int' }
  { name: 'RecordsDropped', type: 'int' }
  { name: 'RootKeysUnknownAccounts', type: 'string' }
  { name: 'OutboxItemsDeadLettered', type: 'int' }
  { name: 'ExceptionsProblem', type: 'string' }
  { name: 'CredentialsCollected', type: 'int' }
  { name: 'CredentialsUnknownAccounts', type: 'string' }
]
var digestRunColumns = [
  { name: 'TimeGenerated', type: 'datetime' }
  { name: 'RunId', type: 'string' }
  { name: 'Status', type: 'string' }
  { name: 'Mode', type: 'string' }
  { name: 'DigestsBuilt', type: 'int' }
  { name: 'DigestsSent', type: 'int' }
  { name: 'DigestsNotSent', type: 'int' }
  { name: 'RowsListed', type: 'int' }
  { name: 'RowsWithoutRecipient', type: 'int' }
  { name: 'Errors', type: 'string' }
  { name: 'DurationSeconds', type: 'real' }
  { name: 'CollectorVersion', type: 'string' }
]
var credentialColumns = [
  { name: 'TimeGenerated', type: 'datetime' }
  { name: 'RunId', type: 'string' }
  { name: 'AccountId', type: 'string' }
  { name: 'AccountName', type: 'string' }
  { name: 'UserName', type: 'string' }
  { name: 'UserArn', type: 'string' }
  { name: 'Owner', type: 'string' }
  { name: 'Privileged', type: 'boolean' }
  { name: 'PrivilegeReasons', type: 'string' }
  { name: 'Quarantined', type: 'boolean' }
  { name: 'CredentialType', type: 'string' }
  { name: 'Service', type: 'string' }
  { name: 'CredentialId', type: 'string' }
  { name: 'CredentialFingerprint', type: 'string' }
  { name: 'Status', type: 'string' }
  { name: 'CreatedAt', type: 'datetime' }
  { name: 'ExpiresAt', type: 'datetime' }
  { name: 'AgeDays', type: 'int' }
  { name: 'NoExpiry', type: 'boolean' }
  { name: 'RotationDue', type: 'boolean' }
  { name: 'ExpiringSoon', type: 'boolean' }
  { name: 'Excepted', type: 'boolean' }
  { name: 'ExceptionReason', type: 'string' }
  { name: 'ExceptionExpires', type: 'datetime' }
]

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: checkedTags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

module logAnalytics 'modules/log-analytics.bicep' = if (!useExistingWorkspace) {
  name: 'logAnalytics'
  scope: rg
  params: {
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
    // Shared-key ingestion (the Data Collector API) stays possible only for the opt-in legacy sink.
    disableLocalAuth: !enableLegacyDataCollector
  }
}

module customTables 'modules/custom-tables.bicep' = {
  name: 'customTables-${resourceToken}'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    workspaceName: workspaceName
    keysTableName: keysTableName
    runsTableName: runsTableName
    credentialsTableName: credentialsTableName
    keyColumns: keyColumns
    runColumns: runColumns
    digestRunsTableName: digestRunsTableName
    digestRunColumns: digestRunColumns
    credentialColumns: credentialColumns
    retentionInDays: logRetentionInDays
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    dataCollectionLocation: workspaceLocation
    tags: tags
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    dataCollectionEndpointName: '${abbrs.dataCollectionEndpoints}${resourceToken}'
    // Only private link needs a data collection endpoint; otherwise the rule's own Logs Ingestion endpoint is used.
    createDataCollectionEndpoint: vnetEnabled
    dataCollectionRuleName: '${abbrs.dataCollectionRules}${resourceToken}'
    workspaceResourceId: workspaceResourceId
    keysStreamName: keysStreamName
    runsStreamName: runsStreamName
    credentialsStreamName: credentialsStreamName
    keysTableName: keysTableName
    runsTableName: runsTableName
    credentialsTableName: credentialsTableName
    keyColumns: keyColumns
    runColumns: runColumns
    digestRunsStreamName: digestRunsStreamName
    digestRunsTableName: digestRunsTableName
    digestRunColumns: digestRunColumns
    credentialColumns: credentialColumns
  }
  // The rule's output streams must exist as tables before the rule is created.
  dependsOn: [
    customTables
  ]
}

// What people look at and are told about: the workbook and the alert rules, their queries from queries/*.kql.
module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceResourceId: workspaceResourceId
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceResourceId: workspaceResourceId
    namePrefix: 'aws-iam-keys-${resourceToken}'
    actionGroupId: alertActionGroupId
    alertEmailAddress: alertEmailAddress
    collectorSilentAfterHours: collectorSilentAfterHours
    runFailedWindowHours: runFailedWindowHours
  }
  // The rules' tables must exist.
  dependsOn: [
    customTables
  ]
}

// Workspace functions (AwsIamKeyCreators: who created each key), in the workspace's resource group like the tables.
module workspaceFunctions 'modules/log-analytics-functions.bicep' = {
  name: 'workspaceFunctions-${resourceToken}'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    workspaceName: workspaceName
  }
  // The function reads the collector's keys table.
  dependsOn: [
    customTables
  ]
}

// Microsoft Sentinel, only when asked: the same alerts as analytics rules, and hunting queries, on the workspace (in
// its own resource group, like the tables).
module sentinel 'modules/sentinel.bicep' = if (sentinelWorkspace) {
  name: 'sentinel-${resourceToken}'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    sentinelWorkspace: sentinelWorkspace
    workspaceName: workspaceName
    // A workspace this deployment creates is onboarded to Microsoft Sentinel; an existing one must already be.
    onboardWorkspace: !useExistingWorkspace
    collectorSilentAfterHours: collectorSilentAfterHours
    runFailedWindowHours: runFailedWindowHours
  }
  // The rules' tables must exist.
  dependsOn: [
    customTables
  ]
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyVault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    enablePurgeProtection: enableKeyVaultPurgeProtection
    workspaceResourceId: workspaceResourceId
    // vnetEnabled: the private endpoint only, or with allowed ranges the public endpoint for them only.
    publicNetworkAccess: vnetEnabled && empty(keyVaultAllowedIps) ? 'Disabled' : 'Enabled'
    networkDefaultAction: vnetEnabled ? 'Deny' : 'Allow'
    allowedIpRanges: vnetEnabled ? keyVaultAllowedIps : []
  }
}

// Opt-in legacy Data Collector sink: only then is the workspace shared key read (listKeys) and put into Key Vault.
module legacyWorkspaceKey 'modules/legacy-workspace-key.bicep' = if (enableLegacyDataCollector) {
  name: 'legacyWorkspaceKey'
  scope: rg
  params: {
    keyVaultName: keyVault.outputs.name
    workspaceName: workspaceName
    workspaceResourceGroupName: workspaceResourceGroupName
    workspaceSubscriptionId: workspaceSubscriptionId
    tags: tags
    secretName: logAnalyticsWorkspaceKeySecretName
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    outboxContainerName: outboxContainer
    exceptionsContainerName: exceptionsContainer
    publicNetworkAccess: vnetEnabled ? 'Disabled' : 'Enabled'
  }
}

// Network isolation (vnetEnabled): the app joins a delegated subnet; storage blobs and Key Vault are reached through
// private endpoints whose names resolve in private DNS zones linked to the network.
module network 'modules/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: '${abbrs.networkVirtualNetworks}${resourceToken}'
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
  }
}

module roleAssignments 'modules/role-assignments.bicep' = {
  name: 'roleAssignments'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    keyVaultName: keyVault.outputs.name
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    dataCollectionRuleName: monitoring.outputs.dataCollectionRuleName
  }
}

// Owner digests (docs/owner-digests.md): Communication Services with an Azure-managed domain, the identity allowed to
// send through it, and to read the workspace (in the workspace's resource group, like the tables).
module notify 'modules/notify.bicep' = {
  name: 'notify'
  scope: rg
  params: {
    tags: tags
    communicationServiceName: '${abbrs.communicationCommunicationServices}${resourceToken}'
    emailServiceName: '${abbrs.communicationEmailServices}${resourceToken}'
    dataLocation: notifyDataLocation
    principalId: identity.outputs.principalId
  }
}

module notifyReader 'modules/notify-reader.bicep' = {
  name: 'notifyReader-${resourceToken}'
  scope: resourceGroup(workspaceSubscriptionId, workspaceResourceGroupName)
  params: {
    workspaceName: workspaceName
    principalId: identity.outputs.principalId
  }
  // The workspace must exist (a new one is created by this deployment).
  dependsOn: [
    customTables
  ]
}

// Every setting the collector reads (shared/config/settings.py), with the contract's defaults.
var collectorSettings = {
  COLLECTOR_SCHEDULE: collectorSchedule
  AZURE_CLIENT_ID: identity.outputs.clientId
  KEY_VAULT_URL: keyVault.outputs.uri
  AWS_AUTH_MODE: awsAuthMode
  AWS_ROLE_ARN: awsRoleArn
  AWS_EXTERNAL_ID: effectiveExternalId
  AWS_ACCESS_KEY_ID_SECRET: awsAccessKeyIdSecretName
  AWS_SECRET_ACCESS_KEY_SECRET: awsSecretAccessKeySecretName
  AWS_WEB_IDENTITY_AUDIENCE: awsWebIdentityAudience
  AWS_ACCOUNTS: awsAccounts
  AWS_MEMBER_ROLE_NAME: awsMemberRoleName
  AWS_REGION: awsRegion
  LOG_SINK: logSink
  LOGS_INGESTION_ENDPOINT: monitoring.outputs.logsIngestionEndpoint
  LOGS_INGESTION_RULE_ID: monitoring.outputs.logsIngestionRuleId
  LOGS_INGESTION_KEYS_STREAM: keysStreamName
  LOGS_INGESTION_RUNS_STREAM: runsStreamName
  LOG_ANALYTICS_WORKSPACE_KEY_SECRET: logAnalyticsWorkspaceKeySecretName
  LOG_ANALYTICS_DOMAIN: logAnalyticsDomain
  FILE_SINK_DIR: fileSinkDir
  KEY_ROTATION_DAYS: string(keyRotationDays)
  KEY_UNUSED_DAYS: string(keyUnusedDays)
  COLLECTOR_ACCOUNT_CONCURRENCY: string(accountConcurrency)
  COLLECTOR_IAM_CONCURRENCY: string(iamConcurrency)
  COLLECTOR_IAM_MAX_CALLS_PER_SECOND: string(iamMaxCallsPerSecond)
  OUTBOX_CONTAINER: outboxContainer
  OUTBOX_MAX_RECORDS: string(outboxMaxRecords)
  OUTBOX_MAX_AGE_HOURS: string(outboxMaxAgeHours)
  OWNER_TAG_KEYS: ownerTagKeys
  EXCEPTIONS_FILE: exceptionsFile
  EXCEPTIONS_SOURCE: exceptionsSource
  EXCEPTIONS_CONTAINER: exceptionsContainer
  EXCEPTIONS_BLOB: 'exceptions.json'
  EXCEPTIONS_MAX_DAYS: string(exceptionsMaxDays)
  // Owner digests (shared/config/notify.py): dry_run until notifyMode says send.
  NOTIFY_SCHEDULE: notifySchedule
  NOTIFY_MODE: notifyMode
  NOTIFY_EMAIL_ENDPOINT: notify.outputs.endpoint
  NOTIFY_SENDER: notify.outputs.sender
  NOTIFY_FALLBACK_RECIPIENT: notifyFallbackRecipient
  NOTIFY_WORKSPACE_ID: customTables.outputs.customerId
}

// Only the opt-in legacy sink learns the workspace id (its key is in Key Vault, see modules/keyvault.bicep).
var legacySettings = enableLegacyDataCollector ? {
  LOG_ANALYTICS_WORKSPACE_ID: customTables.outputs.customerId
} : {}

module functionApp 'modules/function-app.bicep' = {
  name: 'functionApp'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    appSettings: union(collectorSettings, legacySettings)
    maximumInstanceCount: maximumInstanceCount
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
  }
  // The identity must hold its storage, vault and monitoring roles (and the digests' send and read ones) before the
  // host starts.
  dependsOn: [
    roleAssignments
    notify
    notifyReader
  ]
}

// Outputs azd stores in .azure/<env>/.env; docs/deploy.md uses them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output KEY_VAULT_URL string = keyVault.outputs.uri
output LOGS_INGESTION_ENDPOINT string = monitoring.outputs.logsIngestionEndpoint
output LOGS_INGESTION_RULE_ID string = monitoring.outputs.logsIngestionRuleId
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AWS_AUTH_MODE string = awsAuthMode
output AWS_WEB_IDENTITY_AUDIENCE string = awsWebIdentityAudience
output AWS_OIDC_PROVIDER_URL string = 'https://sts.windows.net/${tenant().tenantId}/'
output AWS_EXTERNAL_ID string = effectiveExternalId
// The parameters of infra/aws/home-account.yaml, ready for `aws cloudformation deploy --parameter-overrides`.
output AWS_HOME_STACK_PARAMETERS string = webIdentity ? 'AuthMode=web_identity TenantId=${tenant().tenantId} ManagedIdentityObjectId=${identity.outputs.principalId} Audience=${awsWebIdentityAudience}' : 'AuthMode=access_key ExternalId=${effectiveExternalId}'
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output AZURE_LOG_ANALYTICS_WORKSPACE_RESOURCE_ID string = workspaceResourceId
output AZURE_LOG_ANALYTICS_WORKSPACE_ID string = customTables.outputs.customerId
output AZURE_WORKBOOK_ID string = workbook.outputs.id
