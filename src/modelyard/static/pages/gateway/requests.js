// The Gateway page's API calls.
import { get } from "../../js/api.js";
import { PATHS } from "../../js/paths.js";

export const readGatewayInfo = () => get(PATHS.gatewayInfo);
