// The host interface as the tests control it.
export const settings = new Map();
export const logged = [];

export function config(key) {
  return settings.get(key);
}

export function log(level, message) {
  logged.push([level, message]);
}
