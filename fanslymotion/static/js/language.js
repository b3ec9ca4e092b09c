// The language machinery both pages share: one saved choice (localStorage), picked from the
// browser's languages the first time; each page brings its own texts in English and Russian.

const KEY = "fanslymotion.lang";

function pick(texts) {
  const saved = localStorage.getItem(KEY);
  if (saved && saved in texts) return saved;
  const wanted = navigator.languages?.length ? navigator.languages : [navigator.language || "en"];
  return wanted.some((l) => String(l).toLowerCase().startsWith("ru")) ? "ru" : "en";
}

/** The functions a page uses on its `texts` ({en: {...}, ru: {...}}). With `titleKey`,
 * apply() also sets the document's title from that text. */
export function makeLanguage(texts, { titleKey = null } = {}) {
  let lang = pick(texts);

  function t(key, vars = {}) {
    const text = texts[lang][key] ?? texts.en[key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
  }

  return {
    language: () => lang,
    setLanguage(next) {
      lang = next in texts ? next : "en";
      localStorage.setItem(KEY, lang);
    },
    t,
    has: (key) => key in texts[lang],
    /** Fill every [data-i18n] element (and [data-i18n-placeholder], [data-i18n-alt]) under root. */
    apply(root = document) {
      document.documentElement.lang = lang;
      for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
      for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
        el.placeholder = t(el.dataset.i18nPlaceholder);
      }
      for (const el of root.querySelectorAll("[data-i18n-alt]")) el.alt = t(el.dataset.i18nAlt);
      if (titleKey) document.title = t(titleKey);
    },
  };
}
