// @nodai/widget: the React component, and the framework-free mount function
// it wraps (also available alone as `@nodai/widget/core`, without React).

export { NodaiQuery, type NodaiQueryProps } from "./react.js";
export {
  mountNodaiQuery,
  RESULT_EVENT,
  type NodaiQueryOptions,
  type NodaiQueryWidget,
  type NodaiResult,
  type NodaiTheme,
  type RateLimit,
} from "./core.js";
