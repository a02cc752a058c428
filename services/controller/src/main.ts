import { KubeConfig } from '@kubernetes/client-node';
import { loadConfig } from '../../core/src/config.ts';
import { runUntilSignalled } from '../../core/src/lifecycle.ts';
import { createLogger } from '../../core/src/log.ts';
import { createControllerService } from './service.ts';

const config = loadConfig();
const log = createLogger({ service: 'controller', level: config.logLevel }).child({ pod: config.podName });
const kubeConfig = new KubeConfig();
// In a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config.
kubeConfig.loadFromDefault();
const { lifecycle } = createControllerService(config, kubeConfig, log);
await runUntilSignalled(lifecycle, log, config.shutdownTimeoutMs + 5_000);
