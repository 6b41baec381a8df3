// AgentFlow web console: lists workflows, draws a workflow's graph, runs it with inputs and shows
// the live event stream per node, plus a health panel; a dashboard of the tenant's runs
// (`#/dashboard`) and a stored run's view (`#/executions/<id>`), by the fragment. It uses only
// the public REST/SSE API (Envoy's gRPC-JSON transcoder) with an API key sent as `x-api-key`, or
// the access token of a person signed in through the server's OpenID Connect issuer.
//
// Everything from the API is written with textContent / setAttribute, never as HTML.
// This entry module only wires the views (views/) together; lib/ holds what they share.

import { $ } from './lib/dom.js';
import { initApiKeyForm } from './views/api-key.js';
import { hideError } from './views/banner.js';
import { watchHealth } from './views/health.js';
import { initNavigation, refreshRoute } from './views/navigation.js';
import { cancelRun, onRunSubmit } from './views/run.js';
import { initSignIn } from './views/sign-in.js';
import { selectWorkflow } from './views/workflow-detail.js';
import { initWorkflowList, loadWorkflows } from './views/workflows.js';

function onKeyChanged() {
  hideError();
  loadWorkflows();
  refreshRoute();
}

function init() {
  initApiKeyForm(onKeyChanged);
  $('error-close').addEventListener('click', hideError);
  initWorkflowList(selectWorkflow);
  $('run-form').addEventListener('submit', onRunSubmit);
  $('cancel-button').addEventListener('click', cancelRun);
  watchHealth();
  loadWorkflows();
  initNavigation();
  initSignIn(onKeyChanged);
}

init();
