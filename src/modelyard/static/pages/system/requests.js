// The System page's API call.
import { get } from "../../js/api.js";

const RESOURCES_PATH = "/api/system/resources";

export const firstRequests = () => [RESOURCES_PATH];
export const readResources = () => get(RESOURCES_PATH);
