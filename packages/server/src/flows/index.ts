/**
 * Flows: the loader of flow files, the definition cache and the flow runner.
 */
export type * from './types.js'
export {
  ConnectionMissingError,
  FlowStepError,
  FlowValidationError,
  formatIssue,
} from './errors.js'
export type { ConnectionMissingErrorDetails, FlowIssue, FlowStepErrorDetails } from './errors.js'
export {
  MAX_FLOW_FILE_BYTES,
  fieldPath,
  loadFlowFile,
  loadFlowsDir,
  parseFlow,
  readFlowFile,
  revisionOf,
} from './loader.js'
export type { FlowFileLoader, LoadFlowsDirOptions, LoadedFlows, ParsedFlow } from './loader.js'
export { FlowDefinitions } from './definitions.js'
export type { FlowDefinitionsOptions, FlowDefinitionsStats } from './definitions.js'
export { FlowRunner, flowNamespace, stepCacheKey, stepCacheNamespace } from './runner.js'
export type { FlowRunOptions, FlowRunnerOptions, SandboxFactory } from './runner.js'
export { escapeKeyValue, parseKeyTemplate, renderKeyTemplate } from './key-template.js'
export type { TemplatePart, TemplateProblem } from './key-template.js'
