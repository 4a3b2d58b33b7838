// Provider kinds — their labels and capability flags — as the server describes them
// (GET /api/providers/kinds, read once a session: they change only with modelyard itself),
// and the labels of the places models come from. Pages ask these instead of naming kinds.
import { get } from "./api.js";
import { PATHS } from "./paths.js";

/** The instance id of the GGUF files of the models directory (a scope, not a server). */
export const LOCAL_FILES = "local";
const SOURCE_LABELS = {
  ollama: "Ollama library",
  hf: "Hugging Face",
  url: "URL",
  local: "Local file",
};

let known = new Map(); // kind -> {kind, label, capabilities}
let loading = null;

/** Read the kinds (once; a failed read is tried again by the next caller). */
export function loadKinds() {
  loading ??= get(PATHS.kinds).then(
    ({ kinds }) => {
      known = new Map(kinds.map((k) => [k.kind, k]));
      return known;
    },
    (err) => {
      loading = null;
      throw err;
    },
  );
  return loading;
}

export const allKinds = () => [...known.values()];
export const kindLabel = (kind) => known.get(kind)?.label ?? kind;
/** Whether providers of `kind` have capability `flag` (e.g. "loads_models"). */
export const can = (kind, flag) => Boolean(known.get(kind)?.capabilities?.[flag]);

export const sourceLabel = (source) => SOURCE_LABELS[source] ?? kindLabel(source);
/** Every source a model can have: where files come from, then the kinds that list models. */
export const allSources = () => [
  ...Object.keys(SOURCE_LABELS),
  ...[...known.keys()].filter((k) => !(k in SOURCE_LABELS)),
];
