// A client-node KubeConfig pointing at a fake API server. client-node 1.x refuses an http:// server unless the
// cluster sets skipTLSVerify (it then uses a plain http.Agent), so that flag is what makes plain HTTP work.
import { KubeConfig } from '@kubernetes/client-node';

/** A KubeConfig whose current context talks to `serverUrl` (http://127.0.0.1:PORT) with a dummy bearer token. */
export function kubeConfigFor(serverUrl: string, namespace = 'default'): KubeConfig {
  const config = new KubeConfig();
  config.loadFromOptions({
    clusters: [{ name: 'fake', server: serverUrl, skipTLSVerify: true }],
    users: [{ name: 'fake', token: 'fake-token' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'fake', namespace }],
    currentContext: 'fake',
  });
  return config;
}
