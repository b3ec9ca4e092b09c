"""Every text the Telegram bot shows, in English and Russian.

Plain text (the bot sends no parse mode), so nothing a user types or a job carries can break
the markup. `t(lang, key, **values)` formats one text; an unknown language falls back to English.
Both tables have the same keys with the same placeholders (a test checks it).
"""

from __future__ import annotations

LANGUAGES: tuple[str, ...] = ("en", "ru")
DEFAULT_LANGUAGE = "en"


def language_from_code(code: str | None) -> str:
    """The bot language for a Telegram `language_code` (e.g. "ru-RU" -> "ru").

    Russian only for Russian: speakers of Ukrainian, Kazakh and the others are not assumed to
    want Russian; `/language` switches at any time.
    """
    if code and code.split("-")[0].lower() == "ru":
        return "ru"
    return DEFAULT_LANGUAGE


EN: dict[str, str] = {
    # menu and navigation
    "menu": (
        "🎬 FanslyMotion turns a photo into a short video with smooth camera motion.\n\n"
        "What would you like to do? You can also just send me a photo."
    ),
    "btn_new": "🎬 Photo → video",
    "btn_history": "📼 My videos",
    "btn_help": "❓ Help",
    "btn_lang": "🌐 Language",
    "btn_back": "⬅️ Back",
    "btn_menu": "🏠 Menu",
    "btn_cancel": "✖️ Cancel",
    "btn_cancel_job": "✖️ Cancel {n}",
    "btn_again": "🎲 Another variant",
    "btn_retry": "🔁 Try again",
    "btn_settings": "🛠 Same photo, other settings",
    "btn_last_settings": "⚡ As last time: {params}",
    "btn_other": "🎞 Same photo, other motion",
    "btn_remake": "🔁 Make it again",
    # the steps
    "step_duration": "Step 1 of 5 — length.\nHow long should the video be?",
    "step_resolution": (
        "Step 2 of 5 — resolution.\n{summary}\n\n"
        "How sharp should it be? The higher the resolution, the longer it takes."
    ),
    "step_motion": "Step 3 of 5 — camera motion.\n{summary}\n\n{descriptions}",
    "step_motion_other": "Same photo, another camera motion.\n{summary}\n\n{descriptions}",
    "step_aspect": (
        "Step 4 of 5 — frame shape.\n{summary}\n\n"
        "Auto matches your photo: landscape → 16:9, portrait → 9:16, square → 1:1."
    ),
    "step_photo": (
        "Step 5 of 5 — the photo.\n{summary}\n\n"
        "Send me a photo, or an image as a file (up to {limit} MB)."
    ),
    "step_photo_again": (
        "I no longer have that photo. Please send it again.\n{summary}\n\n"
        "Send me a photo, or an image as a file (up to {limit} MB)."
    ),
    "summary": "Your choice: {parts}",
    "seconds": "{n} s",
    "aspect_auto": "Auto (from the photo)",
    "motion_micro": "Micro",
    "motion_pan_l": "Pan left",
    "motion_pan_r": "Pan right",
    "motion_tilt_up": "Tilt up",
    "motion_tilt_down": "Tilt down",
    "motion_dolly_in": "Dolly in",
    # the photo
    "not_image": "That's {kind}, not an image. Please send a photo (JPEG, PNG, WebP…).",
    "kind_pdf": "a PDF",
    "kind_zip": "an archive",
    "kind_text": "a text file",
    "kind_video": "a video",
    "kind_audio": "an audio file",
    "kind_voice": "a voice message",
    "kind_sticker": "a sticker",
    "kind_message": "a text message",
    "kind_file": "a file",
    "heic_refused": "I could not read that HEIC/HEIF file. Please send it as a photo instead.",
    "album_first": "That's an album: I'll use its first photo.",
    "too_big": (
        "That file is larger than {limit} MB, too large for a bot to download. "
        "Please send a smaller image, or send it as a photo."
    ),
    "unreadable": "I could not use that image: {detail}. Please try another photo.",
    # the {detail} of "unreadable", by the error's code
    "why_generic": "something about it is wrong",
    "why_photo_empty": "the file is empty",
    "why_photo_unreadable": "the file could not be read",
    "why_photo_damaged": "it is damaged or cut short",
    "why_photo_unsupported": (
        "I can't read it as an image: it may be damaged, or in a format I don't know"
        " (send a {formats} photo)"
    ),
    "why_photo_too_many_pixels": "it has too many pixels (the limit is {megapixels} megapixels)",
    "why_photo_too_small": (
        "it is too small ({width}×{height}; at least {min_side} px on the short side)"
    ),
    "wrong_input": "That's {kind}. Please send a photo for this step, or press Back above.",
    "use_buttons": "That's {kind}. Please choose with the buttons above, or press Back.",
    "photo_first": "Nice photo! I'll keep it. First choose the video settings.",
    "photo_kept": "Got your photo: after the last step it goes straight into the queue.",
    "download_failed": "I could not download that file from Telegram. Please send it again.",
    # accepted and progress
    "accepted_queued": "✅ Accepted! Your video is #{position} in the queue.\nReady in {eta}.",
    "accepted_running": "✅ Accepted! Rendering has started.\nReady in {eta}.",
    "accepted_paused": (
        "✅ Accepted! Your video is #{position} in the queue.\n"
        "⏸ Paused by the operator; your place is kept."
    ),
    "progress_queued": "⏳ Waiting in the queue: #{position}\nReady in {eta}\n{params}",
    "progress_waiting": "⏳ Waiting to start\nReady in {eta}\n{params}",
    "progress_paused": (
        "⏸ Paused by the operator; your place is kept: #{position} in the queue\n{params}"
    ),
    "note_retry": "🔁 Retrying (attempt {attempt} of {tries})",
    "note_resumed": "🔄 The service restarted. Your video is back in the queue.",
    "note_restart_running": "🔄 The service restarted. Picking your video up again.",
    "note_from_start": "🔄 The service restarted. Rendering again from the beginning.",
    "note_from_pass": "🔄 The service restarted. Continuing from pass {step}.",
    "fail_timeout": "it took too long to make",
    "fail_memory": "the server ran out of memory",
    "fail_render": "something went wrong on our side",
    "progress_started": (
        "🎬 Rendering has started.\n{phase}: {percent}%\n{bar}\nTime left: {eta}\n{params}"
    ),
    "progress_running": "🎬 {phase}: {percent}%\n{bar}\nTime left: {eta}\n{params}",
    "progress_done": "✅ Ready! Here comes the video.\n{params}",
    "progress_cancelled": "✖️ Cancelled. Nothing will be sent.\n{params}",
    "progress_failed": "⚠️ Sorry, this video could not be made: {error}.\n{params}",
    "phase_starting": "Starting",
    "phase_preparing": "Preparing",
    "phase_rendering": "Rendering",
    "phase_finishing": "Finishing",
    "phase_loading": "Loading the model",
    "phase_encoding": "Encoding",
    "phase_animating": "Animating",
    "phase_decoding": "Decoding",
    "phase_resumed": "Continuing",
    "phase_shot": "Shot",
    "phase_generic": "Working",
    "eta_unknown": "a moment",
    "eta_seconds": "about {s} s",
    "eta_minutes": "about {m} min",
    "params": "{motion} · {duration} · {resolution} · {aspect}",
    # delivery
    "caption": (
        "🎬 {motion} · {duration} · {resolution} ({width}×{height}) · {aspect} · {fps} fps\n"
        "Variant #{variant}"
    ),
    "fps": "{fps} fps",
    "btn_subject": "🎯 Subject: {where}",
    "step_subject": (
        "Where is the subject?\n{summary}\n\n"
        "Tap its place in the photo, or keep Auto: I look for faces and keep them in frame."
    ),
    "subject_auto": "Auto (faces)",
    "subject_0": "top left",
    "subject_1": "top",
    "subject_2": "top right",
    "subject_3": "left",
    "subject_4": "centre",
    "subject_5": "right",
    "subject_6": "bottom left",
    "subject_7": "bottom",
    "subject_8": "bottom right",
    "warn_upscale": (
        "🔍 The photo is small for {resolution}: it will be enlarged {factor}× and look soft."
    ),
    "btn_lower": "📉 Make it {resolution} instead",
    "video_too_big": "Sorry, the video is too large to send through Telegram.",
    "video_missing": "Sorry, this video is no longer available.",
    # job buttons
    "cancelling": "Cancelling…",
    "delivery_interrupted": (
        "The service restarted while your video was being sent, so it may not have arrived."
        " If you don't see it above, tap the button."
    ),
    "btn_resend": "📩 Send me the video",
    "resending": "Sending it…",
    "already_sent": "This video was sent already.",
    "already_finished": "Nothing to cancel: this video is no longer in progress.",
    "not_yours": "This video is not yours.",
    "stale_button": "This button no longer works. /start opens the menu.",
    "stale_menu": "This menu is outdated: the current one is further down.",
    "stale_none": "This menu is outdated. Send /start for a new one, or just send a photo.",
    "already_queued": "This one is already on its way.",
    "missed_videos": "Welcome back! While you were away, I finished {videos} for you.",
    "videos_one": "{n} video",
    "videos_many": "{n} videos",
    "btn_send_missed": "📩 Send them",
    # limits and errors
    "cap_user": (
        "You already have {videos} in progress, and at most {limit} can be made at a time. "
        "Please wait until one is ready — /status shows them."
    ),
    "cap_queue": "The queue is full right now. Please try again in about {seconds} s.",
    "cap_daily": (
        "That would go over your daily limit of {limit} s of video ({used} s ordered today). "
        "The limit resets at {resets} UTC, in {wait}."
    ),
    "blocked_by_operator": (
        "Sorry, this account cannot order videos at the moment. "
        "If you think this is a mistake, please contact the service's operator."
    ),
    "unavailable": "The service is restarting or paused for new work. Please try again shortly.",
    "storage": "The server is short of disk space right now. Please try again later.",
    "generic_error": "Sorry, something went wrong on our side. Please try again.",
    "private": "Sorry, this bot is private.",
    "unknown": "I did not get that. Send me a photo, or /start for the menu; /help explains more.",
    "hint_idle": "I did not get that. Please use the buttons above, or send me a photo.",
    # commands
    "help": (
        "FanslyMotion makes a short video from one photo: the camera pans, tilts or moves in "
        "over your picture.\n\n"
        "The quickest way: send me a photo at any time. I'll keep it and ask for the "
        "settings.\n\n"
        "Step by step:\n"
        "1. Press “Photo → video” in the menu (/start opens it).\n"
        "2. Pick the length, the resolution, the camera motion and the frame shape.\n"
        "3. Send a photo — a normal photo or an image file up to {limit} MB.\n"
        "4. Watch the progress; the video arrives in this chat.\n\n"
        "Commands:\n"
        "/start — the menu\n"
        "/status — your videos in progress\n"
        "/history — your latest videos\n"
        "/cancel — stop the current step, or cancel a video\n"
        "/language — change the language\n"
        "/help — this text"
    ),
    "cancel_flow": "OK, stopped. /start opens the menu.",
    "cancel_jobs": "Stopped. Videos in progress — press a button to cancel one:",
    "status_none": "You have no videos in progress.",
    "status_header": "Your videos in progress:",
    "status_queued": "{n}. {params} — #{position} in the queue, ready in {eta}",
    "status_paused": "{n}. {params} — #{position} in the queue, paused by the operator",
    "status_running": "{n}. {params} — {phase} {percent}%, ready in {eta}",
    "history_none": "No videos yet. Press “Photo → video” to make one, or just send a photo.",
    "history_header": "Your videos, {first}–{last} of {total} (newest first):",
    "history_line": "{n}. {params} · {fps} · #{variant}",
    "history_legend": "📩 sends a video again; 🔁 makes it again when Telegram no longer has it.",
    "history_gone": "{params}: this video can no longer be re-sent (Telegram no longer has it).",
    "btn_hist_send": "📩 {n}",
    "btn_hist_repeat": "🔁 {n}",
    "btn_newer": "⬅️ Newer",
    "btn_older": "Older ➡️",
    "lang_prompt": "Choose the language:",
    "lang_set": "Language: English.",
    # admins
    "queue_stats": (
        "Queue: {queued} waiting, running: {running}\n"
        "Jobs: queued {c_queued} · processing {c_processing} · completed {c_completed}"
        " · failed {c_failed} · cancelled {c_cancelled}\n"
        "Renderer: {renderer} ({renderer_status}: {renderer_reason})\n"
        "Processing: {processing}"
    ),
    "queue_none": "none",
    "stats_unavailable": "This service keeps no figures.",
    "stats_today": (
        "Today (UTC): {jobs} jobs · {completed} done · {failed} failed (failure rate {rate})\n"
        "Queue: {queued} waiting · {running} running · processing {processing}\n"
        "Median render time: {medians}"
    ),
    "processing_paused": "paused",
    "processing_on": "running",
    "paused": "⏸ Processing paused. Queued videos wait until /resume.",
    "resumed": "▶️ Processing resumed.",
    # stories (issue 25): an album, music
    "album_story": "That's an album of {n} photos: they will make one story.",
    "story_note": "🎞 An album of {n} photos: one story of {seconds} s, crossfaded.",
    "story_music": "🎵 With your music.",
    "music_kept": "🎵 Music kept: it will play under this video. /nomusic removes it.",
    "music_removed": "🔇 No music this time.",
    "music_too_big": "That audio is larger than {limit} MB. Please send a smaller one.",
    "music_refused": "I could not use that music: {why}. Send another, or /nomusic.",
    "music_audio_silent": "it is silent",
    "music_audio_unreadable": "it is not an audio file I can read (MP3, M4A, WAV, OGG or FLAC)",
    "music_audio_too_long": "it is longer than 10 minutes",
    "music_audio_too_large": "it is larger than 20 MB",
    "music_audio_start": "it is too short",
    "caption_story": "🎞 Story: {n} photos{music}",
    "caption_music": " · music",
    "story_choose": "🎞 The next album's story: its transition and its look.",
    "story_transition_cut": "Cut",
    "story_transition_crossfade": "Crossfade",
    "story_transition_fade": "Through black",
    "story_transition_slide": "Slide",
    "story_look_natural": "Natural",
    "story_look_warm": "Warm",
    "story_look_cool": "Cool",
    "story_look_vivid": "Vivid",
    "story_look_mono": "Black and white",
    "story_look_film": "Film",
}

RU: dict[str, str] = {
    "menu": (
        "🎬 FanslyMotion превращает фото в короткое видео с плавным движением камеры.\n\n"
        "Что сделаем? Можно и просто прислать мне фото."
    ),
    "btn_new": "🎬 Фото → видео",
    "btn_history": "📼 Мои видео",
    "btn_help": "❓ Помощь",
    "btn_lang": "🌐 Язык",
    "btn_back": "⬅️ Назад",
    "btn_menu": "🏠 Меню",
    "btn_cancel": "✖️ Отменить",
    "btn_cancel_job": "✖️ Отменить {n}",
    "btn_again": "🎲 Другой вариант",
    "btn_retry": "🔁 Попробовать ещё раз",
    "btn_settings": "🛠 То же фото, другие настройки",
    "btn_last_settings": "⚡ Как в прошлый раз: {params}",
    "btn_other": "🎞 То же фото, другое движение",
    "btn_remake": "🔁 Сделать заново",
    "step_duration": "Шаг 1 из 5 — длительность.\nСколько должно длиться видео?",
    "step_resolution": (
        "Шаг 2 из 5 — разрешение.\n{summary}\n\n"
        "Насколько чётким должно быть видео? Чем выше разрешение, тем дольше его создавать."
    ),
    "step_motion": "Шаг 3 из 5 — движение камеры.\n{summary}\n\n{descriptions}",
    "step_motion_other": "То же фото, другое движение камеры.\n{summary}\n\n{descriptions}",
    "step_aspect": (
        "Шаг 4 из 5 — формат кадра.\n{summary}\n\n"
        "«Авто» подбирает формат под фото: горизонтальное → 16:9, вертикальное → 9:16,"
        " квадратное → 1:1."
    ),
    "step_photo": (
        "Шаг 5 из 5 — фото.\n{summary}\n\nПришлите фото или изображение файлом (до {limit} МБ)."
    ),
    "step_photo_again": (
        "Этого фото у меня больше нет. Пришлите его ещё раз.\n{summary}\n\n"
        "Пришлите фото или изображение файлом (до {limit} МБ)."
    ),
    "summary": "Вы выбрали: {parts}",
    "seconds": "{n} с",
    "aspect_auto": "Авто (по фото)",
    "motion_micro": "Микро",
    "motion_pan_l": "Панорама влево",
    "motion_pan_r": "Панорама вправо",
    "motion_tilt_up": "Наклон вверх",
    "motion_tilt_down": "Наклон вниз",
    "motion_dolly_in": "Наезд",
    "not_image": "Это {kind}, а не изображение. Пришлите фото (JPEG, PNG, WebP…).",
    "kind_pdf": "PDF-документ",
    "kind_zip": "архив",
    "kind_text": "текстовый файл",
    "kind_video": "видео",
    "kind_audio": "аудиофайл",
    "kind_voice": "голосовое сообщение",
    "kind_sticker": "стикер",
    "kind_message": "текстовое сообщение",
    "kind_file": "файл",
    "heic_refused": "Не получилось прочитать этот файл HEIC/HEIF. Отправьте его как фото.",
    "album_first": "Это альбом: я возьму из него первое фото.",
    "too_big": (
        "Файл больше {limit} МБ — бот не может скачать такой файл. "
        "Пришлите изображение поменьше или отправьте его как фото."
    ),
    "unreadable": "Не получилось использовать это изображение: {detail}. Попробуйте другое фото.",
    "why_generic": "с ним что-то не так",
    "why_photo_empty": "файл пустой",
    "why_photo_unreadable": "файл не удалось прочитать",
    "why_photo_damaged": "оно повреждено или обрезано",
    "why_photo_unsupported": (
        "я не могу прочитать его как изображение: возможно, файл повреждён или в незнакомом"
        " мне формате (пришлите фото {formats})"
    ),
    "why_photo_too_many_pixels": "в нём слишком много пикселей (не больше {megapixels} Мп)",
    "why_photo_too_small": (
        "оно слишком маленькое ({width}×{height}; нужно хотя бы {min_side} пикс. по короткой стороне)"
    ),
    "wrong_input": "Это {kind}. На этом шаге нужно фото — или нажмите «Назад» выше.",
    "use_buttons": "Это {kind}. Выберите вариант кнопками выше или нажмите «Назад».",
    "photo_first": "Отличное фото! Я его сохраню. Сначала выберите настройки видео.",
    "photo_kept": "Фото у меня: после последнего шага оно сразу встанет в очередь.",
    "download_failed": "Не удалось скачать файл из Telegram. Пришлите его ещё раз.",
    "accepted_queued": "✅ Принято! Ваше видео №{position} в очереди.\nБудет готово {eta}.",
    "accepted_running": "✅ Принято! Видео уже создаётся.\nБудет готово {eta}.",
    "accepted_paused": (
        "✅ Принято! Ваше видео №{position} в очереди.\n"
        "⏸ Обработка приостановлена оператором. Ваше место сохранено."
    ),
    "progress_queued": "⏳ В очереди: №{position}\nБудет готово {eta}\n{params}",
    "progress_waiting": "⏳ Ждёт запуска\nБудет готово {eta}\n{params}",
    "progress_paused": (
        "⏸ Обработка приостановлена оператором. Ваше место в очереди сохранено: №{position}\n"
        "{params}"
    ),
    "note_retry": "🔁 Повторная попытка ({attempt} из {tries})",
    "note_resumed": "🔄 Сервис перезапускался. Ваше видео снова в очереди.",
    "note_restart_running": "🔄 Сервис перезапускался. Снова берёмся за ваше видео.",
    "note_from_start": "🔄 Сервис перезапускался. Видео создаётся заново, с самого начала.",
    "note_from_pass": "🔄 Сервис перезапускался. Продолжаем с прохода {step}.",
    "fail_timeout": "оно создавалось слишком долго",
    "fail_memory": "серверу не хватило памяти",
    "fail_render": "у нас что-то пошло не так",
    "progress_started": (
        "🎬 Началось создание видео.\n{phase}: {percent}%\n{bar}\nБудет готово {eta}\n{params}"
    ),
    "progress_running": "🎬 {phase}: {percent}%\n{bar}\nБудет готово {eta}\n{params}",
    "progress_done": "✅ Готово! Отправляю видео.\n{params}",
    "progress_cancelled": "✖️ Отменено. Видео не будет отправлено.\n{params}",
    "progress_failed": "⚠️ К сожалению, видео не получилось: {error}.\n{params}",
    "phase_starting": "Запуск",
    "phase_preparing": "Подготовка",
    "phase_rendering": "Создание видео",
    "phase_finishing": "Завершение",
    "phase_loading": "Загрузка модели",
    "phase_encoding": "Кодирование",
    "phase_animating": "Анимация",
    "phase_decoding": "Декодирование",
    "phase_resumed": "Продолжение",
    "phase_shot": "Сцена",
    "phase_generic": "Обработка",
    "eta_unknown": "совсем скоро",
    "eta_seconds": "примерно через {s} с",
    "eta_minutes": "примерно через {m} мин",
    "params": "{motion} · {duration} · {resolution} · {aspect}",
    "caption": (
        "🎬 {motion} · {duration} · {resolution} ({width}×{height}) · {aspect} · {fps} кадр/с\n"
        "Вариант №{variant}"
    ),
    "fps": "{fps} кадр/с",
    "btn_subject": "🎯 Объект: {where}",
    "step_subject": (
        "Где главный объект?\n{summary}\n\n"
        "Нажмите на его место на фото или оставьте «Авто»: я найду лица и удержу их в кадре."
    ),
    "subject_auto": "Авто (лица)",
    "subject_0": "вверху слева",
    "subject_1": "вверху",
    "subject_2": "вверху справа",
    "subject_3": "слева",
    "subject_4": "в центре",
    "subject_5": "справа",
    "subject_6": "внизу слева",
    "subject_7": "внизу",
    "subject_8": "внизу справа",
    "warn_upscale": (
        "🔍 Фото маловато для {resolution}: его придётся увеличить в {factor} раза,"
        " и видео выйдет нечётким."
    ),
    "btn_lower": "📉 Сделать в {resolution}",
    "video_too_big": "К сожалению, видео слишком большое для отправки через Telegram.",
    "video_missing": "К сожалению, это видео больше недоступно.",
    "cancelling": "Отменяю…",
    "delivery_interrupted": (
        "Сервис перезапустился во время отправки видео, и оно могло не дойти."
        " Если выше его нет, нажмите кнопку."
    ),
    "btn_resend": "📩 Прислать видео",
    "resending": "Отправляю…",
    "already_sent": "Это видео уже отправлено.",
    "already_finished": "Отменять нечего: это видео уже не в работе.",
    "not_yours": "Это не ваше видео.",
    "stale_button": "Эта кнопка больше не работает. /start откроет меню.",
    "stale_menu": "Это меню устарело: актуальное ниже.",
    "stale_none": (
        "Это меню устарело. Отправьте /start, чтобы открыть новое, или просто пришлите фото."
    ),
    "already_queued": "Это видео уже в работе.",
    "missed_videos": "С возвращением! Пока вас не было, я закончил для вас {videos}.",
    "videos_one": "{n} видео",
    "videos_many": "{n} видео",
    "btn_send_missed": "📩 Прислать их",
    "cap_user": (
        "У вас уже {videos} в работе, а одновременно можно делать не больше {limit}. "
        "Дождитесь, пока одно из них будет готово, — /status покажет их."
    ),
    "cap_queue": "Очередь сейчас заполнена. Попробуйте примерно через {seconds} с.",
    "cap_daily": (
        "Так вы превысите дневной лимит в {limit} с видео (сегодня заказано {used} с). "
        "Лимит обновится в {resets} UTC, через {wait}."
    ),
    "blocked_by_operator": (
        "К сожалению, с этого аккаунта сейчас нельзя заказывать видео. "
        "Если это ошибка, напишите администратору сервиса."
    ),
    "unavailable": "Сервис перезапускается или не принимает новые задания. Попробуйте чуть позже.",
    "storage": "На сервере сейчас мало места. Попробуйте позже.",
    "generic_error": "Извините, у нас что-то пошло не так. Попробуйте ещё раз.",
    "private": "Извините, это закрытый бот.",
    "unknown": "Не понял. Пришлите фото или откройте меню командой /start; /help расскажет больше.",
    "hint_idle": "Не понял. Воспользуйтесь кнопками выше или пришлите фото.",
    "help": (
        "FanslyMotion делает короткое видео из одного фото: камера плавно движется "
        "по вашему снимку.\n\n"
        "Быстрее всего — просто прислать мне фото в любой момент. Я его сохраню и спрошу "
        "настройки.\n\n"
        "По шагам:\n"
        "1. Нажмите «Фото → видео» в меню (его открывает /start).\n"
        "2. Выберите длительность, разрешение, движение камеры и формат кадра.\n"
        "3. Пришлите фото — обычное фото или файл-изображение до {limit} МБ.\n"
        "4. Следите за прогрессом: видео придёт в этот чат.\n\n"
        "Команды:\n"
        "/start — меню\n"
        "/status — ваши видео в работе\n"
        "/history — ваши последние видео\n"
        "/cancel — прервать текущий шаг или отменить видео\n"
        "/language — сменить язык\n"
        "/help — эта справка"
    ),
    "cancel_flow": "Хорошо, остановились. /start откроет меню.",
    "cancel_jobs": "Остановились. Видео в работе — нажмите кнопку, чтобы отменить:",
    "status_none": "У вас нет видео в работе.",
    "status_header": "Ваши видео в работе:",
    "status_queued": "{n}. {params} — №{position} в очереди, будет готово {eta}",
    "status_paused": "{n}. {params} — №{position} в очереди, обработка приостановлена оператором",
    "status_running": "{n}. {params} — {phase} {percent}%, будет готово {eta}",
    "history_none": (
        "Видео пока нет. Нажмите «Фото → видео», чтобы сделать первое, или просто пришлите фото."
    ),
    "history_header": "Ваши видео, {first}–{last} из {total} (сначала новые):",
    "history_line": "{n}. {params} · {fps} · #{variant}",
    "history_legend": (
        "📩 — прислать видео ещё раз; 🔁 — сделать его заново, если в Telegram его уже нет."
    ),
    "history_gone": "{params}: это видео больше нельзя прислать повторно (в Telegram его уже нет).",
    "btn_hist_send": "📩 {n}",
    "btn_hist_repeat": "🔁 {n}",
    "btn_newer": "⬅️ Новее",
    "btn_older": "Старше ➡️",
    "lang_prompt": "Выберите язык:",
    "lang_set": "Язык: русский.",
    "queue_stats": (
        "Очередь: ждут {queued}, выполняется: {running}\n"
        "Задания: в очереди {c_queued} · в работе {c_processing} · готово {c_completed}"
        " · ошибки {c_failed} · отменено {c_cancelled}\n"
        "Рендерер: {renderer} ({renderer_status}: {renderer_reason})\n"
        "Обработка: {processing}"
    ),
    "queue_none": "нет",
    "stats_unavailable": "Этот сервис не ведёт сводку.",
    "stats_today": (
        "Сегодня (UTC): заданий {jobs} · готово {completed} · ошибок {failed}"
        " (доля ошибок {rate})\n"
        "Очередь: ждут {queued} · в работе {running} · обработка {processing}\n"
        "Медиана времени рендера: {medians}"
    ),
    "processing_paused": "на паузе",
    "processing_on": "идёт",
    "paused": "⏸ Обработка на паузе. Видео в очереди ждут команды /resume.",
    "resumed": "▶️ Обработка возобновлена.",
    # stories (issue 25): an album, music
    "album_story": "Это альбом из {n} фото: из них получится одна история.",
    "story_note": "🎞 Альбом из {n} фото: одна история на {seconds} с, с плавными переходами.",
    "story_music": "🎵 С вашей музыкой.",
    "music_kept": "🎵 Музыка сохранена: она будет звучать в этом видео. /nomusic уберёт её.",
    "music_removed": "🔇 На этот раз без музыки.",
    "music_too_big": "Этот аудиофайл больше {limit} МБ. Пришлите файл поменьше.",
    "music_refused": "Не получилось использовать эту музыку: {why}. Пришлите другую или /nomusic.",
    "music_audio_silent": "в ней тишина",
    "music_audio_unreadable": "это не аудиофайл, который я могу прочитать (MP3, M4A, WAV, OGG, FLAC)",
    "music_audio_too_long": "она длиннее 10 минут",
    "music_audio_too_large": "файл больше 20 МБ",
    "music_audio_start": "она слишком короткая",
    "caption_story": "🎞 История: {n} фото{music}",
    "caption_music": " · музыка",
    "story_choose": "🎞 История из следующего альбома: переход и стиль.",
    "story_transition_cut": "Склейка",
    "story_transition_crossfade": "Наплыв",
    "story_transition_fade": "Через чёрный",
    "story_transition_slide": "Сдвиг",
    "story_look_natural": "Естественный",
    "story_look_warm": "Тёплый",
    "story_look_cool": "Холодный",
    "story_look_vivid": "Яркий",
    "story_look_mono": "Чёрно-белый",
    "story_look_film": "Плёнка",
}

# One line per preset for the motion step, after its name and a dash (so they begin in lower
# case). The English ones also serve anyone else who shows them.
PRESET_DESCRIPTIONS: dict[str, str] = {
    "micro": "a slow push-in of a few percent with a subtle drift: the photo gently comes alive",
    "pan_l": "the camera turns left: the scene slides to the right across the frame",
    "pan_r": "the camera turns right: the scene slides to the left across the frame",
    "tilt_up": "the camera tilts up: the scene slides down the frame",
    "tilt_down": "the camera tilts down: the scene slides up the frame",
    "dolly_in": "the camera moves toward the centre: a clear, steady zoom in",
}

DESCRIPTIONS: dict[str, dict[str, str]] = {
    "en": PRESET_DESCRIPTIONS,
    "ru": {
        "micro": "медленный наезд на несколько процентов с лёгким смещением: фото мягко оживает",
        "pan_l": "камера поворачивается влево: сцена плывёт по кадру вправо",
        "pan_r": "камера поворачивается вправо: сцена плывёт по кадру влево",
        "tilt_up": "камера наклоняется вверх: сцена опускается в кадре",
        "tilt_down": "камера наклоняется вниз: сцена поднимается в кадре",
        "dolly_in": "камера движется к центру: чёткое плавное приближение",
    },
}

# The page as a Telegram Mini App (issue 24): the menu button and /app.
EN.update(
    {
        "app_button": "Open the app",
        "app_open": "Your videos and the editor, inside Telegram: tap below.",
        "app_off": "The app is not available on this server yet. Send me a photo here instead.",
    }
)
RU.update(
    {
        "app_button": "Открыть приложение",
        "app_open": "Ваши видео и редактор прямо в Telegram: нажмите кнопку ниже.",
        "app_off": "Приложение на этом сервере пока недоступно. Пришлите фото сюда.",
    }
)

TEXTS: dict[str, dict[str, str]] = {"en": EN, "ru": RU}

# Names of the languages in the language picker, each in its own language.
LANGUAGE_NAMES: dict[str, str] = {"en": "English", "ru": "Русский"}

# Commands for the Telegram menu (setMyCommands), per language. /lang still works too.
COMMANDS: dict[str, list[tuple[str, str]]] = {
    "en": [
        ("start", "Menu: make a video from a photo"),
        ("status", "My videos in progress"),
        ("history", "My latest videos"),
        ("cancel", "Stop the current step or a video"),
        ("language", "Change the language"),
        ("help", "How it works"),
    ],
    "ru": [
        ("start", "Меню: видео из фото"),
        ("status", "Мои видео в работе"),
        ("history", "Мои последние видео"),
        ("cancel", "Прервать шаг или отменить видео"),
        ("language", "Сменить язык"),
        ("help", "Как это работает"),
    ],
}


def t(lang: str, key: str, **values: object) -> str:
    """The text `key` in `lang` (English when missing), formatted with `values`."""
    table = TEXTS.get(lang, EN)
    template = table.get(key) or EN[key]
    return template.format(**values) if values else template


def videos(lang: str, n: int) -> str:
    """ "1 video", "3 videos" (Russian "видео" does not change with the number)."""
    return t(lang, "videos_one" if n == 1 else "videos_many", n=n)


def motion_name(lang: str, preset: str) -> str:
    key = f"motion_{preset}"
    return t(lang, key) if key in EN else preset


def motion_description(lang: str, preset: str) -> str:
    return DESCRIPTIONS.get(lang, {}).get(preset) or PRESET_DESCRIPTIONS.get(preset, "")
