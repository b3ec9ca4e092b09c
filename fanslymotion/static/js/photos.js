// The photos this browser submitted, kept in IndexedDB by job id, so that "another variant",
// "other motion" and the gallery's "again" can send the same photo after a reload. The service
// deletes its copy of a photo once the job ends (INPUT_RETENTION), so only the browser has it.
// The photo in the form (not sent yet, or being rendered) is kept too, so a reload keeps it.

const DB = "fanslymotion";
const STORE = "photos";
const KEEP = 40;
const DRAFT = "draft"; // the key of the photo in the form (job ids are never this)

function open() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function run(mode, work) {
  return open().then(
    (db) =>
      new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        const result = work(tx.objectStore(STORE));
        tx.oncomplete = () => {
          db.close();
          resolve(result.result);
        };
        tx.onerror = () => {
          db.close();
          reject(tx.error);
        };
      }),
  );
}

export async function keepPhoto(jobId, file) {
  try {
    await run("readwrite", (store) =>
      store.put({ blob: file, name: file.name || "photo", type: file.type, at: Date.now() }, jobId),
    );
    await prune();
  } catch {
    // private windows may refuse IndexedDB: resubmitting after a reload is then not possible
  }
}

export async function photoOf(jobId) {
  try {
    const entry = await run("readonly", (store) => store.get(jobId));
    if (!entry) return null;
    return new File([entry.blob], entry.name, { type: entry.type });
  } catch {
    return null;
  }
}

/** Keep the photo in the form (null forgets it). */
export async function keepDraft(file) {
  try {
    await run("readwrite", (store) =>
      file
        ? store.put({ blob: file, name: file.name || "photo", type: file.type, at: 0 }, DRAFT)
        : store.delete(DRAFT),
    );
  } catch {
    // no IndexedDB: the form simply starts empty after a reload
  }
}

export function draftPhoto() {
  return photoOf(DRAFT);
}

async function prune() {
  const keys = await run("readonly", (store) => store.getAllKeys());
  const entries = await run("readonly", (store) => store.getAll());
  if (entries.length <= KEEP + 1) return;
  const order = keys
    .map((key, i) => [entries[i].at, key])
    .filter(([, key]) => key !== DRAFT)
    .sort((a, b) => a[0] - b[0]);
  const drop = order.slice(0, Math.max(0, order.length - KEEP)).map(([, key]) => key);
  await run("readwrite", (store) => {
    for (const key of drop) store.delete(key);
    return { result: drop.length };
  });
}
