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
# Idempotent: the application is found again by AWS_WEB_IDENTITY_APP_ID (or its display name) on every provision.
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
if [ -n "$audience" ] && [ "$audience" != "$shared_audience" ] && [ -z "$app_id" ]; then
  echo "entra-app: AWS_WEB_IDENTITY_AUDIENCE is set to $audience (an application of your own): left as it is."
  exit 0
fi

display_name="aws-iam-key-collector-${AZURE_ENV_NAME:?AZURE_ENV_NAME is not set (run through azd)}"
if [ -z "$app_id" ]; then
  app_id=$(az ad app list --display-name "$display_name" --query "[0].appId" --output tsv)
fi
if [ -z "$app_id" ]; then
  echo "entra-app: creating the Entra application $display_name"
  app_id=$(az ad app create --display-name "$display_name" --sign-in-audience AzureADMyOrg --query appId --output tsv)
fi
object_id=$(az ad app show --id "$app_id" --query id --output tsv)
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
azd env set AWS_WEB_IDENTITY_AUDIENCE "$audience"
echo "entra-app: AWS_WEB_IDENTITY_AUDIENCE=$audience (application $display_name, $app_id)"
