// Texts of the page in English and Russian; the browser's language picks one, the switch keeps
// the choice in localStorage.

const TEXTS = {
  en: {
    "token.change": "Change token",
    "token.title": "This service needs its API token",
    "token.help": "Enter the value of FANSLYMOTION_API_TOKEN. It stays in this browser.",
    "token.label": "API token",
    "token.save": "Save",
    "token.wrong": "This token was not accepted. Check FANSLYMOTION_API_TOKEN on the server and try again.",
    "make.title": "Make a video",
    "make.animate": "Animate",
    "photo.drop": "Drop a photo here, paste it, or choose a file",
    "photo.choose": "Choose a file",
    "photo.none": "No photo chosen",
    "photo.pasted": "pasted photo",
    "photo.empty": "The file is empty.",
    "photo.unreadable": "This file is not a photo this browser or the service can read: send a {supported} photo.",
    "photo.type": "This file is not a supported image: send a {supported} photo.",
    "photo.size": "The photo is larger than {mb} MB.",
    "photo.small": "The photo is too small: at least {min} px on the short side (this one is {w}x{h}).",
    "photo.pixels": "The photo has too many pixels: at most {mp} megapixels.",
    "photo.nopreview": "This browser cannot show this photo, so there is no camera preview; the service can still animate it.",
    "preview.caption": "The frame shows where the camera goes during the clip.",
    "preview.alt": "The chosen photo",
    "cam.custom": "Aim the camera myself",
    "cam.help": "Drag the Start and End frames over the photo; the wheel, a pinch or the slider zooms the selected one. Keyboard: Tab to a frame, arrow keys move it (with Shift, faster), + and − zoom.",
    "cam.zoom": "Zoom of the selected frame",
    "cam.ease": "Movement",
    "cam.smooth": "Smooth (eases in and out)",
    "cam.linear": "Steady",
    "cam.addMiddle": "Add a middle frame",
    "cam.removeMiddle": "Remove the middle frame",
    "cam.play": "Play the path",
    "cam.stop": "Stop",
    "cam.start": "Start",
    "cam.middle": "Middle",
    "cam.end": "End",
    "cam.keyLabel": "{name} frame: centre at {x} % across and {y} % down, zoom {zoom}×",
    "warn.upscale": "At {resolution} the camera's closest frame enlarges the photo {factor}×: the video will look soft.",
    "warn.lower": "Use {resolution} instead",
    "opt.duration": "Duration",
    "opt.resolution": "Resolution",
    "opt.motion": "Motion",
    "opt.aspect": "Aspect",
    "opt.strength": "Strength",
    "opt.fps": "Frame rate",
    "opt.fpsValue": "{n} fps",
    "opt.loop": "Loop: the camera comes back to where it started",
    "opt.seed": "Variant (seed)",
    "opt.random": "random",
    "opt.randomize": "Random",
    "opt.seconds": "{n} s",
    "aspect.auto": "auto (from the photo)",
    "motion.micro": "Micro (gentle push-in)",
    "motion.pan_l": "Pan left",
    "motion.pan_r": "Pan right",
    "motion.tilt_up": "Tilt up",
    "motion.tilt_down": "Tilt down",
    "motion.dolly_in": "Dolly in (zoom)",
    "job.title": "Rendering",
    "job.cancel": "Cancel",
    "job.queued": "Waiting in the queue",
    "job.position": "Position in the queue: {n}",
    "job.processing": "Rendering",
    "job.eta": "About {s} s left",
    "job.completed": "Done",
    "job.failed": "The render failed",
    "job.cancelled": "Cancelled",
    "job.cancelling": "Cancelling…",
    "job.lost": "Lost the connection to the service; retrying…",
    "phase.starting": "starting",
    "phase.loading": "loading the model",
    "phase.preparing": "preparing",
    "phase.resumed": "resuming",
    "phase.rendering": "rendering frames",
    "phase.animating": "animating",
    "phase.decoding": "decoding",
    "phase.encoding": "encoding the video",
    "phase.finishing": "finishing",
    "result.title": "Your video",
    "result.download": "Download",
    "result.variant": "Another variant",
    "result.motion": "Other motion",
    "result.otherLabel": "Motion for the next video",
    "result.nophoto": "The photo of this video is not kept in this browser: choose it again above.",
    "param.duration": "Duration",
    "param.size": "Size",
    "param.motion": "Motion",
    "param.aspect": "Aspect",
    "param.strength": "Strength",
    "param.seed": "Variant (seed)",
    "param.renderer": "Renderer",
    "param.aspectAuto": "{ratio} (auto, from the photo)",
    "gallery.title": "Your videos",
    "gallery.empty": "No videos yet.",
    "gallery.prev": "Newer",
    "gallery.next": "Older",
    "gallery.page": "Page {n}",
    "gallery.play": "Play",
    "gallery.download": "Download",
    "gallery.cancel": "Cancel",
    "gallery.resubmit": "Again",
    "gallery.seed": "variant {seed}",
    "status.queued": "queued",
    "status.processing": "rendering",
    "status.completed": "done",
    "status.failed": "failed",
    "status.cancelled": "cancelled",
    "user.note": "This browser's user id for the service is {id} (kept in this browser only).",
    "error.network": "The service cannot be reached. Is it running?",
  },
  ru: {
    "token.change": "Сменить токен",
    "token.title": "Этому сервису нужен API-токен",
    "token.help": "Введите значение FANSLYMOTION_API_TOKEN. Оно сохранится только в этом браузере.",
    "token.label": "API-токен",
    "token.save": "Сохранить",
    "token.wrong": "Токен не подошёл. Проверьте FANSLYMOTION_API_TOKEN на сервере и попробуйте снова.",
    "make.title": "Сделать видео",
    "make.animate": "Оживить",
    "photo.drop": "Перетащите фото сюда, вставьте его или выберите файл",
    "photo.choose": "Выбрать файл",
    "photo.none": "Фото не выбрано",
    "photo.pasted": "вставленное фото",
    "photo.empty": "Файл пустой.",
    "photo.unreadable": "Этот файл — не фото, которое может прочитать браузер или сервис: пришлите фото в формате {supported}.",
    "photo.type": "Это не поддерживаемое изображение: пришлите фото в формате {supported}.",
    "photo.size": "Фото больше {mb} МБ.",
    "photo.small": "Фото слишком маленькое: нужно не меньше {min} px по короткой стороне (у этого {w}x{h}).",
    "photo.pixels": "В фото слишком много пикселей: не больше {mp} мегапикселей.",
    "photo.nopreview": "Браузер не может показать это фото, поэтому превью камеры нет; сервис всё равно может его оживить.",
    "preview.caption": "Рамка показывает, куда пойдёт камера за время ролика.",
    "preview.alt": "Выбранное фото",
    "cam.custom": "Навести камеру самому",
    "cam.help": "Перетащите рамки «Начало» и «Конец» по фото; колесо мыши, щипок или ползунок меняют зум выбранной. С клавиатуры: Tab до рамки, стрелки двигают её (с Shift — быстрее), + и − меняют зум.",
    "cam.zoom": "Зум выбранной рамки",
    "cam.ease": "Движение камеры",
    "cam.smooth": "Плавное (разгон и торможение)",
    "cam.linear": "Равномерное",
    "cam.addMiddle": "Добавить среднюю рамку",
    "cam.removeMiddle": "Убрать среднюю рамку",
    "cam.play": "Проиграть путь",
    "cam.stop": "Стоп",
    "cam.start": "Начало",
    "cam.middle": "Середина",
    "cam.end": "Конец",
    "cam.keyLabel": "Рамка «{name}»: центр на {x} % по ширине и {y} % по высоте, зум {zoom}×",
    "warn.upscale": "При {resolution} самый близкий кадр камеры увеличивает фото в {factor} раза: видео будет нечётким.",
    "warn.lower": "Взять {resolution}",
    "opt.duration": "Длительность",
    "opt.resolution": "Разрешение",
    "opt.motion": "Движение",
    "opt.aspect": "Формат кадра",
    "opt.strength": "Сила",
    "opt.fps": "Частота кадров",
    "opt.fpsValue": "{n} кадр/с",
    "opt.loop": "Петля: камера возвращается туда, откуда начала",
    "opt.seed": "Вариант (seed)",
    "opt.random": "случайный",
    "opt.randomize": "Случайный",
    "opt.seconds": "{n} с",
    "aspect.auto": "авто (по фото)",
    "motion.micro": "Микро (лёгкий наезд)",
    "motion.pan_l": "Панорама влево",
    "motion.pan_r": "Панорама вправо",
    "motion.tilt_up": "Наклон вверх",
    "motion.tilt_down": "Наклон вниз",
    "motion.dolly_in": "Наезд (зум)",
    "job.title": "Рендер",
    "job.cancel": "Отменить",
    "job.queued": "Ждёт в очереди",
    "job.position": "Место в очереди: {n}",
    "job.processing": "Идёт рендер",
    "job.eta": "Осталось около {s} с",
    "job.completed": "Готово",
    "job.failed": "Рендер не удался",
    "job.cancelled": "Отменено",
    "job.cancelling": "Отменяем…",
    "job.lost": "Связь с сервисом потеряна; пробуем снова…",
    "phase.starting": "запуск",
    "phase.loading": "загрузка модели",
    "phase.preparing": "подготовка",
    "phase.resumed": "продолжение",
    "phase.rendering": "кадры",
    "phase.animating": "анимация",
    "phase.decoding": "декодирование",
    "phase.encoding": "кодирование видео",
    "phase.finishing": "завершение",
    "result.title": "Ваше видео",
    "result.download": "Скачать",
    "result.variant": "Другой вариант",
    "result.motion": "Другое движение",
    "result.otherLabel": "Движение для следующего видео",
    "result.nophoto": "Фото этого видео не сохранено в браузере: выберите его снова выше.",
    "param.duration": "Длительность",
    "param.size": "Размер",
    "param.motion": "Движение",
    "param.aspect": "Формат кадра",
    "param.strength": "Сила",
    "param.seed": "Вариант (seed)",
    "param.renderer": "Рендерер",
    "param.aspectAuto": "{ratio} (авто, по фото)",
    "gallery.title": "Ваши видео",
    "gallery.empty": "Видео пока нет.",
    "gallery.prev": "Новее",
    "gallery.next": "Старше",
    "gallery.page": "Страница {n}",
    "gallery.play": "Смотреть",
    "gallery.download": "Скачать",
    "gallery.cancel": "Отменить",
    "gallery.resubmit": "Ещё раз",
    "gallery.seed": "вариант {seed}",
    "status.queued": "в очереди",
    "status.processing": "рендер",
    "status.completed": "готово",
    "status.failed": "ошибка",
    "status.cancelled": "отменено",
    "user.note": "Id пользователя этого браузера для сервиса: {id} (хранится только в этом браузере).",
    "error.network": "Сервис недоступен. Он запущен?",
  },
};

const KEY = "fanslymotion.lang";
let lang = pick();

function pick() {
  const saved = localStorage.getItem(KEY);
  if (saved && saved in TEXTS) return saved;
  const wanted = navigator.languages?.length ? navigator.languages : [navigator.language || "en"];
  return wanted.some((l) => String(l).toLowerCase().startsWith("ru")) ? "ru" : "en";
}

export function language() {
  return lang;
}

export function setLanguage(next) {
  lang = next in TEXTS ? next : "en";
  localStorage.setItem(KEY, lang);
}

export function t(key, vars = {}) {
  const text = TEXTS[lang][key] ?? TEXTS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export function has(key) {
  return key in TEXTS[lang];
}

/** Fill every [data-i18n] element (and [data-i18n-placeholder], [data-i18n-alt]) under root. */
export function apply(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-alt]")) el.alt = t(el.dataset.i18nAlt);
}

/** The phase of a status body in the page's language: its `phase` with the pass
 * ("animating 2/4"), or, from a service that only sends `message`, that message's first word. */
export function phase(body) {
  if (body.phase) {
    const name = has(`phase.${body.phase}`) ? t(`phase.${body.phase}`) : body.phase;
    return body.phase_steps ? `${name} ${body.phase_step}/${body.phase_steps}` : name;
  }
  if (!body.message) return "";
  const [word, ...rest] = String(body.message).split(" ");
  const key = `phase.${word}`;
  return has(key) ? [t(key), ...rest].join(" ") : body.message;
}
