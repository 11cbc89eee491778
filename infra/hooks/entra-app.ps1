# azd preprovision hook on native Windows (azure.yaml, hooks.preprovision.windows). azd picks a hook by the operating
# system it runs on, not by the shell it was started from, so on Windows this script runs, not entra-app.sh (Git Bash
# does not change that).
#
# The work of the web_identity mode - the collector's own Entra application, whose Application ID URI becomes
# AWS_WEB_IDENTITY_AUDIENCE, stored with AWS_WEB_IDENTITY_APP_ID - is done by infra/hooks/entra-app.sh, under a POSIX
# shell only (tests/contract/test_deploy_hooks.py runs it through its decisions). This script does what needs no application:
# the default mode (access_key) passes, an audience of your own is left as it is, and web_identity without one is
# refused here, before anything is provisioned, with what to do instead (docs/deploy.md, "web_identity on Windows").
$ErrorActionPreference = 'Stop'

$mode = if ($env:AWS_AUTH_MODE) { $env:AWS_AUTH_MODE } else { 'access_key' }
if ($mode -ne 'web_identity') {
    Write-Host "entra-app: AWS_AUTH_MODE is ${mode}: no Entra application needed."
    exit 0
}

$sharedAudience = 'api://AzureADTokenExchange'
$audience = "$env:AWS_WEB_IDENTITY_AUDIENCE"
if ($audience -and ($audience -ne $sharedAudience)) {
    # Set by hand, or by entra-app.sh on an earlier provision from WSL, Linux or macOS: used as it is. This script
    # neither creates nor checks the application.
    Write-Host "entra-app: AWS_WEB_IDENTITY_AUDIENCE is set to ${audience}: left as it is."
    exit 0
}

$message = @'
entra-app: AWS_AUTH_MODE is web_identity, and on native Windows this hook cannot create the collector's own Entra
application (infra/hooks/entra-app.sh does that, under a POSIX shell only). Nothing was provisioned. Either:
  - run azd from WSL, Linux or macOS: the hook there creates the application and sets AWS_WEB_IDENTITY_APP_ID and
    AWS_WEB_IDENTITY_AUDIENCE; or
  - create the application yourself (docs/deploy.md, "web_identity on Windows") and record it by hand (the object id
    too, so that the POSIX hook adopts it if you later provision from WSL, Linux or macOS):
      azd env set AWS_WEB_IDENTITY_APP_ID <the application (client) id>
      azd env set AWS_WEB_IDENTITY_APP_OBJECT_ID <the application's object id>
      azd env set AWS_WEB_IDENTITY_AUDIENCE api://<the application (client) id>
    then run azd up again; or
  - use AWS_AUTH_MODE access_key (the default): azd env set AWS_AUTH_MODE access_key
'@
[Console]::Error.WriteLine($message)
exit 1
