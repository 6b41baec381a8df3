// The page's views by the address's fragment: `#/` (workflows, the default), `#/dashboard`, and
// `#/executions/<id>` (one stored run). `#api_key=…` is not a route (lib/session.js takes it).

const EXECUTION = /^#\/executions\/([0-9a-f-]{36})$/i;

/** The view the fragment asks for: { view: 'workflows' | 'dashboard' | 'execution', name? }. */
export function currentRoute() {
  const hash = location.hash;
  if (hash === '#/dashboard') return { view: 'dashboard' };
  const execution = EXECUTION.exec(hash);
  if (execution) return { view: 'execution', name: `executions/${execution[1].toLowerCase()}` };
  return { view: 'workflows' };
}

/** The fragment of a stored run's view, from its name (`executions/<id>`). */
export function executionHref(name) {
  return `#/${String(name)}`;
}
