#!/bin/sh
# azd preprovision hook (azure.yaml): in web_identity mode, make sure the collector has its own Entra application whose
# Application ID URI is the audience of the managed identity's token, and store that URI as AWS_WEB_IDENTITY_AUDIENCE
# (main.bicep's awsWebIdentityAudience, the app setting, and the AWS stack's Audience: the OIDC provider's client id).
#
# Why an application of its own: a token for Entra's shared api://AzureADTokenExchange audience is a v2 token (issuer
# https://login.microsoftonline.com/<tenant>/v2.0) that matches no AWS OIDC provider for https://sts.windows.net/
# <tenant>/. A token for an application that asks for v1 tokens (api.requestedAccessTokenVersion 1) has issuer
# https://sts.windows.net/<tenant>/, aud = the application's ID URI and sub = the managed identity's object id.
#
# Whose application: the hook rewrites an application's identifier URIs, so it touches only the one this azd
# environment created. When it creates it, it records its app id and object id in the azd environment
# (AWS_WEB_IDENTITY_APP_ID, AWS_WEB_IDENTITY_APP_OBJECT_ID) before changing anything; later runs adopt that one and no
# other. An application found only by its display name is refused: any member of the tenant can create one with the
# name this hook would look for. And it works only in the tenant of azd's subscription: `az` may be signed in to
# another (a guest account, a second directory), where it would create the application the AWS trust never sees.
#
# Idempotent: the recorded application is found again on every provision.
# Needs permission to create applications in the tenant (default for members; else Application Developer role).
set -eu

mode=${AWS_AUTH_MODE:-access_key}
if [ "$mode" != "web_identity" ]; then
  echo "entra-app: AWS_AUTH_MODE is $mode: no Entra application needed."
  exit 0
fi

shared_audience="api://AzureADTokenExchange"
audience=${AWS_WEB_IDENTITY_AUDIENCE:-}
app_id=${AWS_WEB_IDENTITY_APP_ID:-}
object_id=${AWS_WEB_IDENTITY_APP_OBJECT_ID:-}
if [ -n "$audience" ] && [ "$audience" != "$shared_audience" ] && [ -z "$app_id" ]; then
  echo "entra-app: AWS_WEB_IDENTITY_AUDIENCE is set to $audience (an application of your own): left as it is."
  exit 0
fi

env_name=${AZURE_ENV_NAME:?AZURE_ENV_NAME is not set (run through azd)}
display_name="aws-iam-key-collector-$env_name"

refuse() {
  echo "entra-app: $*" >&2
  exit 1
}

# A GUID and nothing else: these values go into Graph URIs and OData filters.
is_guid() {
  printf '%s' "$1" | grep -Eqx '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}'
}

lower() {
  printf '%s' "$1" | tr 'A-F' 'a-f'
}

# 1. The tenant: the one az works in must be the tenant of the subscription azd deploys to.
subscription=${AZURE_SUBSCRIPTION_ID:?AZURE_SUBSCRIPTION_ID is not set (run through azd)}
signed_in_tenant=$(az account show --query tenantId --output tsv) ||
  refuse "the Azure CLI is not signed in: run \`az login --tenant <the tenant of subscription $subscription>\`."
expected_tenant=${AZURE_TENANT_ID:-}
if [ -z "$expected_tenant" ]; then
  expected_tenant=$(az account show --subscription "$subscription" --query tenantId --output tsv) ||
    refuse "the Azure CLI is signed in to tenant $signed_in_tenant, which cannot see azd's subscription" \
      "$subscription (AZURE_SUBSCRIPTION_ID): run \`az login --tenant <its tenant>\`, then provision again."
fi
if ! is_guid "$signed_in_tenant" || ! is_guid "$expected_tenant"; then
  refuse "cannot tell the tenant (az: '$signed_in_tenant', azd: '$expected_tenant'): run \`az login\` and provision again."
fi
if [ "$(lower "$signed_in_tenant")" != "$(lower "$expected_tenant")" ]; then
  refuse "the Azure CLI is signed in to tenant $signed_in_tenant, but azd deploys to subscription $subscription in" \
    "tenant $expected_tenant; the Entra application must be in the subscription's tenant. Run" \
    "\`az login --tenant $expected_tenant\` (or \`az account set --subscription $subscription\`), then provision again."
fi

# 2. The application: the one this environment recorded, or a new one.
if [ -n "$app_id" ]; then
  if [ -z "$object_id" ]; then
    refuse "AWS_WEB_IDENTITY_APP_ID names application $app_id, but this azd environment has no record of creating it" \
      "(AWS_WEB_IDENTITY_APP_OBJECT_ID is not set), and the hook changes only an application it created." \
      "If it is this environment's (made by an earlier version of this hook), check it is yours" \
      "(\`az ad app show --id $app_id --query \"{name:displayName, objectId:id}\"\`, \`az ad app owner list --id $app_id\`)" \
      "and \`azd env set AWS_WEB_IDENTITY_APP_OBJECT_ID <its object id>\`. To use an application you manage yourself," \
      "\`azd env set AWS_WEB_IDENTITY_APP_ID ''\` and \`azd env set AWS_WEB_IDENTITY_AUDIENCE <its Application ID URI>\`."
  fi
  is_guid "$app_id" || refuse "AWS_WEB_IDENTITY_APP_ID is not an application (client) id: '$app_id'."
  is_guid "$object_id" || refuse "AWS_WEB_IDENTITY_APP_OBJECT_ID is not an object id: '$object_id'."
  found_app_id=$(az ad app show --id "$object_id" --query appId --output tsv) ||
    refuse "the application this environment created ($display_name, app id $app_id, object id $object_id) is not in" \
      "tenant $expected_tenant any more. To create a new one: \`azd env set AWS_WEB_IDENTITY_APP_ID ''\`," \
      "\`azd env set AWS_WEB_IDENTITY_APP_OBJECT_ID ''\` and \`azd env set AWS_WEB_IDENTITY_AUDIENCE ''\`, provision" \
      "again, then redeploy the AWS home stack with the new audience."
  if [ "$(lower "$found_app_id")" != "$(lower "$app_id")" ]; then
    refuse "AWS_WEB_IDENTITY_APP_OBJECT_ID $object_id is application $found_app_id, not AWS_WEB_IDENTITY_APP_ID" \
      "$app_id: the azd environment's record is inconsistent; correct it (\`azd env get-values\`) and provision again."
  fi
else
  existing=$(az ad app list --display-name "$display_name" --query "[].appId" --output tsv)
  if [ -n "$existing" ]; then
    refuse "an Entra application named $display_name already exists in tenant $expected_tenant (app id:" \
      "$(printf '%s' "$existing" | tr '\n' ' ')), but this azd environment did not create it (no AWS_WEB_IDENTITY_APP_ID /" \
      "AWS_WEB_IDENTITY_APP_OBJECT_ID recorded): any member of the tenant can create an application with that name," \
      "so the hook does not adopt it. If it is this environment's from another machine, check its owners" \
      "(\`az ad app owner list --id <app id>\`) and record it: \`azd env set AWS_WEB_IDENTITY_APP_ID <app id>\` and" \
      "\`azd env set AWS_WEB_IDENTITY_APP_OBJECT_ID <its object id>\`. Otherwise delete or rename that application," \
      "or use another environment name."
  fi
  echo "entra-app: creating the Entra application $display_name"
  created=$(az ad app create --display-name "$display_name" --sign-in-audience AzureADMyOrg \
    --query "[appId, id]" --output tsv)
  app_id=$(echo "$created" | sed -n 1p)
  object_id=$(echo "$created" | sed -n 2p)
  is_guid "$app_id" && is_guid "$object_id" || refuse "az ad app create answered '$created', not an app id and an object id."
  # Recorded before anything else, so that a failure below still leaves the application this environment's.
  azd env set AWS_WEB_IDENTITY_APP_ID "$app_id"
  azd env set AWS_WEB_IDENTITY_APP_OBJECT_ID "$object_id"
fi
audience="api://$app_id"

# The ID URI is the audience; v1 tokens carry the sts.windows.net issuer the AWS OIDC provider is registered for.
az rest --method PATCH --uri "https://graph.microsoft.com/v1.0/applications/$object_id" \
  --headers "Content-Type=application/json" \
  --body "{\"identifierUris\":[\"$audience\"],\"api\":{\"requestedAccessTokenVersion\":1}}" --output none

# A service principal in the tenant, so that the managed identity can get tokens for the application.
if [ -z "$(az ad sp list --filter "appId eq '$app_id'" --query "[0].id" --output tsv)" ]; then
  az ad sp create --id "$app_id" --output none
fi

azd env set AWS_WEB_IDENTITY_APP_ID "$app_id"
azd env set AWS_WEB_IDENTITY_APP_OBJECT_ID "$object_id"
azd env set AWS_WEB_IDENTITY_AUDIENCE "$audience"
echo "entra-app: AWS_WEB_IDENTITY_AUDIENCE=$audience (application $display_name, $app_id, tenant $expected_tenant)"
