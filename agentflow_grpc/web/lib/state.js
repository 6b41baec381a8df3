// What the views share: the workflow on show, its graph layout, and the latest run.

export const state = {
  selected: null, // the workflow (as listed) whose graph and run form are shown
  layout: null, // its graph layout (graph-layout.js)
  run: null, // the run started from the page (run.js), while its workflow is shown
};
