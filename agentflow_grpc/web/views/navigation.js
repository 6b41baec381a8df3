// Which view the page shows, by the fragment (lib/routes.js): the workflows and their runs, the
// dashboard, or one stored run. The top bar's links mark the one shown (aria-current).

import { $ } from '../lib/dom.js';
import { currentRoute } from '../lib/routes.js';
import { hideDashboard, showDashboard } from './dashboard.js';
import { showExecution } from './execution-view.js';

const VIEWS = { workflows: 'workflows-view', dashboard: 'dashboard-view', execution: 'execution-view' };

export function initNavigation() {
  window.addEventListener('hashchange', showRoute);
  showRoute();
}

/** Reloads what the view on show reads with the API key (after the key changed). */
export function refreshRoute() {
  const route = currentRoute();
  if (route.view === 'dashboard') showDashboard();
  if (route.view === 'execution') showExecution(route.name);
}

function showRoute() {
  const route = currentRoute();
  for (const [view, id] of Object.entries(VIEWS)) $(id).hidden = view !== route.view;
  for (const link of document.querySelectorAll('[data-nav]')) {
    const current = link.dataset.nav === route.view;
    if (current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (route.view === 'dashboard') showDashboard();
  else hideDashboard();
  if (route.view === 'execution') showExecution(route.name);
}
