// The run form: one field per input of the spec (number, checkbox, JSON, text with suggestions),
// read back into the request's inputs; violations are shown next to their field.

import { $, h, setProps } from '../lib/dom.js';

function isRequired(param) {
  return param.required ?? !('default' in param);
}

export function renderRunForm(inputs) {
  const entries = Object.entries(inputs && typeof inputs === 'object' ? inputs : {});
  $('run-fields').replaceChildren(...(entries.length
    ? entries.map(([name, param]) => inputField(name, param ?? {}))
    : [h('p', { class: 'muted', text: 'This workflow takes no inputs.' })]));
}

function inputField(name, param) {
  const type = param.type ?? 'string';
  const control = inputControl(name, param);
  setProps(control, { id: `input-${name}`, 'data-testid': 'run-input', 'data-input': name, name });
  const label = h('label', { class: 'field-label', for: `input-${name}` },
    h('span', { class: 'field-name', text: name }),
    h('span', { class: 'field-type', text: type }),
    isRequired(param) ? h('span', { class: 'field-required', text: 'required' }) : null);
  const datalist = Array.isArray(param.enum) && type === 'string'
    ? h('datalist', { id: `enum-${name}` }, ...param.enum.map((value) => h('option', { value: String(value) })))
    : null;
  const kind = ['object', 'array'].includes(type) ? 'json' : type === 'boolean' ? 'check' : 'plain';
  return h('div', { class: `field field-${kind}`, 'data-field': name },
    label, control, datalist,
    param.description ? h('p', { class: 'field-help', text: param.description }) : null,
    h('p', { class: 'field-error', hidden: true }));
}

function inputControl(name, param) {
  const fallback = param.default;
  switch (param.type) {
    case 'integer':
    case 'number': {
      const input = h('input', { type: 'number', step: param.type === 'integer' ? '1' : 'any', min: param.minimum, max: param.maximum });
      input.value = fallback ?? '';
      return input;
    }
    case 'boolean': {
      const input = h('input', { type: 'checkbox' });
      input.checked = fallback === true;
      return input;
    }
    case 'object':
    case 'array': {
      const area = h('textarea', { rows: 4, spellcheck: 'false', placeholder: param.type === 'array' ? '[ … ]' : '{ … }' });
      area.value = fallback === undefined ? '' : JSON.stringify(fallback, null, 2);
      return area;
    }
    default: {
      const options = Array.isArray(param.enum) ? param.enum.map(String) : null;
      const input = h('input', {
        type: 'text', spellcheck: 'false', autocomplete: 'off',
        list: options ? `enum-${name}` : null, placeholder: options ? options.join(' | ') : '',
      });
      input.value = fallback === undefined ? '' : String(fallback);
      return input;
    }
  }
}

/** Reads one control: {value} to send, {} to leave out, or {error}. */
function readControl(control, param) {
  const raw = control.value ?? '';
  switch (param.type) {
    case 'boolean':
      return { value: control.checked };
    case 'integer':
    case 'number': {
      if (raw.trim() === '') return control.validity?.badInput ? { error: 'not a number' } : {};
      const value = Number(raw);
      return Number.isFinite(value) ? { value } : { error: 'not a number' };
    }
    case 'object':
    case 'array': {
      if (raw.trim() === '') return {};
      try {
        return { value: JSON.parse(raw) };
      } catch (error) {
        return { error: `not valid JSON (${error.message})` };
      }
    }
    default: // empty: left out, so the server applies the default or reports the missing input
      return raw === '' ? {} : { value: raw };
  }
}

export function readInputs(inputs) {
  const values = {};
  const problems = [];
  for (const [name, param] of Object.entries(inputs ?? {})) {
    const control = $(`input-${name}`);
    if (!control) continue;
    const result = readControl(control, param ?? {});
    if (result.error) problems.push({ field: `inputs/${name}`, description: result.error });
    else if ('value' in result) values[name] = result.value;
  }
  return { values, problems };
}

export function clearFieldErrors() {
  for (const field of $('run-fields').querySelectorAll('.field')) {
    field.classList.remove('is-invalid');
    const error = field.querySelector('.field-error');
    error.textContent = '';
    error.hidden = true;
  }
}

/** Field violations like `inputs/subject` (or `inputs/subject/…`) go next to that input. */
export function markFieldViolations(violations) {
  for (const violation of violations) {
    const match = /^\/?inputs[./]([^./[]+)/.exec(String(violation.field ?? ''));
    const field = match && [...$('run-fields').querySelectorAll('.field')].find((f) => f.dataset.field === match[1]);
    if (!field) continue;
    field.classList.add('is-invalid');
    const error = field.querySelector('.field-error');
    error.textContent = [error.textContent, violation.description].filter(Boolean).join('; ');
    error.hidden = false;
  }
}
