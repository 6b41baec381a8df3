// The workflow list in the sidebar: pages of ListWorkflows, newest load wins; a click selects.

import { api } from '../lib/api.js';
import { $, h } from '../lib/dom.js';
import { fullTime, relativeTime } from '../lib/format.js';
import { hasCredential } from '../lib/session.js';
import { state } from '../lib/state.js';
import { showError } from './banner.js';

const PAGE_SIZE = 50;

const list = {
  workflows: [],
  nextPageToken: '',
  generation: 0, // of the latest load: an older one's answer is dropped
  onSelect: () => {},
};

/** Wires the Reload and More buttons; `onSelect(workflow)` is called when one is clicked. */
export function initWorkflowList(onSelect) {
  list.onSelect = onSelect;
  $('workflows-refresh').addEventListener('click', () => loadWorkflows());
  $('workflows-more').addEventListener('click', () => loadWorkflows({ more: true }));
}

function setListMessage(text) {
  $('workflow-message').textContent = text;
  $('workflow-message').hidden = !text;
}

export async function loadWorkflows({ more = false } = {}) {
  const generation = ++list.generation;
  if (!more) {
    list.workflows = [];
    list.nextPageToken = '';
    $('workflow-items').replaceChildren();
    $('workflows-more').hidden = true;
  }
  if (!hasCredential()) {
    setListMessage('Sign in, or enter your API key above, to list workflows.');
    return;
  }
  setListMessage(more ? '' : 'Loading…');
  const params = new URLSearchParams({ page_size: String(PAGE_SIZE) });
  if (more && list.nextPageToken) params.set('page_token', list.nextPageToken);
  try {
    const page = await (await api(`/v1/workflows?${params}`)).json();
    if (generation !== list.generation) return;
    appendWorkflows(page.workflows ?? []);
    list.nextPageToken = page.next_page_token ?? page.nextPageToken ?? '';
    $('workflows-more').hidden = !list.nextPageToken;
    setListMessage(list.workflows.length ? '' : 'No workflows stored yet.');
  } catch (error) {
    if (generation !== list.generation) return;
    setListMessage(error.isUnauthenticated ? 'The API key was rejected. Enter a valid key above.'
      : error.isForbidden ? 'This API key may not list workflows.' : 'Could not load the workflows.');
    showError(error, 'Listing workflows');
  }
}

function appendWorkflows(workflows) {
  list.workflows.push(...workflows);
  $('workflow-items').append(...workflows.map(workflowItem));
}

function workflowItem(workflow) {
  const specName = workflow.spec_name || workflow.spec?.name || workflow.name;
  const selected = state.selected?.name === workflow.name;
  const button = h('button', {
    type: 'button',
    class: `workflow-item${selected ? ' is-selected' : ''}`,
    'data-testid': 'workflow-item',
    'data-name': workflow.name,
    'aria-pressed': String(selected),
  },
  h('span', { class: 'wf-name', text: specName }),
  workflow.spec?.title ? h('span', { class: 'wf-title', text: workflow.spec.title }) : null,
  h('span', { class: 'wf-meta' },
    h('span', { class: 'tag', text: `v${workflow.version ?? '?'}` }),
    workflow.update_time ? h('time', {
      datetime: workflow.update_time, title: fullTime(workflow.update_time), text: `updated ${relativeTime(workflow.update_time)}`,
    }) : null));
  button.addEventListener('click', () => list.onSelect(workflow));
  return h('li', {}, button);
}

export function markSelectedItem() {
  for (const item of $('workflow-items').querySelectorAll('.workflow-item')) {
    const selected = item.dataset.name === state.selected?.name;
    item.classList.toggle('is-selected', selected);
    item.setAttribute('aria-pressed', String(selected));
  }
}
