// The System page's API call.
import { get } from "../../js/api.js";
import { PATHS } from "../../js/paths.js";

export const readResources = () => get(PATHS.resources);
/** Every container instance with its CPU and memory use. */
export const readContainers = () => get(PATHS.containers);
