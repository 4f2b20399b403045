// Lets `node --test` import plugin.js natively: the component's host import
// resolves to an in-memory stand-in (host-stub.js).
import { register } from 'node:module';

register('./resolve-host.js', import.meta.url);
