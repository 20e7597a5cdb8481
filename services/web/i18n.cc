#include "services/web/i18n.h"

#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace qsign::web {
namespace {

struct Message {
  std::string_view key;
  std::string_view sr;  // Serbian, Cyrillic; Latin is transliterated from it.
  std::string_view en;
};

// Every text of the pages. Keep the keys sorted by area.
constexpr Message kMessages[] = {
    {"lang.name", "Српски (ћирилица)", "English"},
    {"portal.title", "еИД портал — квалификовани сертификат у облаку",
     "eID portal — qualified certificate in the cloud"},
    {"app.title", "qsign апликација за сагласност", "qsign consent app"},
    {"office.title", "Регистрациони центар", "Registration office"},

    {"nav.account", "Мој налог", "My account"},
    {"nav.contract", "Уговор", "Contract"},
    {"nav.sign", "Потпиши документ", "Sign a document"},
    {"nav.login", "Пријава", "Log in"},
    {"nav.register", "Регистрација", "Register"},
    {"nav.logout", "Одјава", "Log out"},
    {"action.cancel", "Одустани", "Cancel"},

    {"err.csrf",
     "Захтев је одбијен: страница је застарела или није са овог сајта. Освежите страницу и "
     "покушајте поново.",
     "Request refused: the page is stale or not from this site. Reload the page and try again."},
    {"err.unavailable", "Услуга тренутно није доступна; покушајте поново за који тренутак.",
     "The service is unavailable right now; try again in a moment."},
    {"err.too_many", "Превише покушаја; сачекајте мало па покушајте поново.",
     "Too many attempts; wait a little and try again."},
    {"err.session", "Сесија је истекла или је завршена; пријавите се поново.",
     "The session expired or ended; log in again."},
    {"err.denied", "Немате право на ову радњу.", "You may not do this."},
    {"err.internal", "Дошло је до грешке на серверу; покушајте касније.",
     "Something went wrong on the server; try later."},
    {"err.refused", "Одбијено:", "Refused:"},

    {"register.title", "Регистрација налога", "Register an account"},
    {"register.intro",
     "Након регистрације посетите регистрациони центар са личном картом или пасошем; тамо добијате "
     "код за активацију апликације.",
     "After registering, visit a registration office with your ID card or passport; there you get "
     "the code that activates the app."},
    {"register.username", "Корисничко име (е-пошта)", "Username (e-mail)"},
    {"register.given_name", "Име", "Given name"},
    {"register.surname", "Презиме", "Surname"},
    {"register.national_id", "ЈМБГ", "Personal ID number (JMBG)"},
    {"register.email", "Е-пошта у сертификату (необавезно)",
     "E-mail in the certificate (optional)"},
    {"register.submit", "Региструј се", "Register"},
    {"register.done.title", "Проверите е-пошту", "Check your e-mail"},
    {"register.done",
     "Ако регистрација може да се настави, на наведену адресу стиже порука са линком који је "
     "довршава (важи 24 сата).",
     "If the registration can go ahead, a message with a link that finishes it arrives at that "
     "address (valid for 24 hours)."},
    {"register.confirm.title", "Потврда регистрације", "Confirm your registration"},
    {"register.confirm.intro", "Потврдите регистрацију налога из поруке коју сте добили.",
     "Confirm the registration of the account from the message you received."},
    {"register.confirm.submit", "Потврди", "Confirm"},
    {"register.confirmed.title", "Регистрација је довршена", "Registration complete"},
    {"register.confirmed",
     "Налог је регистрован. Следећи корак: лична провера идентитета у регистрационом центру.",
     "Your account is registered. Next step: identity check in person at a registration "
     "office."},

    {"login.title", "Пријава", "Log in"},
    {"login.intro",
     "Унесите корисничко име. Захтев за пријаву стиже у вашу апликацију за сагласност.",
     "Enter your username. The login request arrives in your consent app."},
    {"login.username", "Корисничко име (е-пошта)", "Username (e-mail)"},
    {"login.submit", "Пријави се", "Log in"},
    {"login.wait.title", "Потврдите пријаву у апликацији", "Approve the login in the app"},
    {"login.code", "Проверите да апликација приказује исти верификациони код, па одобрите ПИН-ом:",
     "Check that the app shows the same verification code, then approve with your PIN:"},
    {"login.waiting", "Чекамо потврду из апликације…", "Waiting for the app…"},
    {"login.done", "Пријављени сте.", "You are logged in."},
    {"login.denied", "Пријава је одбијена у апликацији.", "The login was refused in the app."},
    {"login.expired", "Пријава није одобрена на време. Покушајте поново.",
     "The login was not approved in time. Try again."},
    {"login.again", "Почни поново", "Start again"},

    {"account.title", "Мој налог", "My account"},
    {"account.person", "Лични подаци", "Personal data"},
    {"account.name", "Име и презиме", "Name"},
    {"account.assurance", "Идентитет", "Identity"},
    {"account.proofed", "проверен у регистрационом центру", "checked at a registration office"},
    {"account.not_proofed", "још није проверен", "not checked yet"},

    {"cert.title", "Квалификовани сертификат", "Qualified certificate"},
    {"cert.state", "Статус", "Status"},
    {"cert.state.active", "активан", "active"},
    {"cert.state.revoked", "опозван", "revoked"},
    {"cert.state.expired", "истекао", "expired"},
    {"cert.state.none", "нема сертификата", "no certificate"},
    {"cert.subject", "Власник", "Subject"},
    {"cert.serial", "Серијски број", "Serial number"},
    {"cert.valid", "Важи", "Valid"},
    {"cert.renew_opens", "Обнова могућа од", "Renewal opens on"},
    {"cert.renew_closed", "Обнова је могућа само у последњих 30 дана важења.",
     "Renewal is possible only in the last 30 days of validity."},
    {"cert.reason", "Разлог", "Reason"},
    {"cert.reason.cessation", "више ми не треба", "no longer needed"},
    {"cert.reason.compromise", "кључ или телефон угрожен", "key or phone compromised"},
    {"cert.issue", "Издај", "Issue"},
    {"cert.issue.confirm",
     "Издаје се квалификовани сертификат важења 5 година; кључ се генерише у HSM-у и никада га не "
     "напушта.",
     "A qualified certificate valid for 5 years is issued; its key is generated in the HSM and "
     "never leaves it."},
    {"cert.issue.button", "Издај сертификат", "Issue the certificate"},
    {"cert.issue.done", "Сертификат је издат.", "The certificate was issued."},
    {"cert.renew", "Обнови", "Renew"},
    {"cert.renew.confirm",
     "Издаје се нови сертификат са новим кључем; стари важи до свог истека, па потписивање не "
     "прекида.",
     "A new certificate with a new key is issued; the old one stays valid until it expires, so "
     "signing never stops."},
    {"cert.renew.button", "Обнови сертификат", "Renew the certificate"},
    {"cert.renew.done", "Сертификат је обновљен.", "The certificate was renewed."},
    {"cert.revoke", "Опозови", "Revoke"},
    {"cert.revoke.confirm",
     "Сертификат се трајно опозива и његов кључ уништава; апликација и налог остају активни.",
     "The certificate is revoked for good and its key destroyed; the app and the account stay "
     "active."},
    {"cert.revoke.button", "Опозови сертификат", "Revoke the certificate"},
    {"cert.revoke.done", "Сертификат је опозван.", "The certificate was revoked."},
    {"cert.revoke-all", "Опозови све", "Revoke all"},
    {"cert.revoke-all.confirm",
     "Опозивају се сви сертификати, апликација за сагласност више неће бити активна, а све сесије "
     "се завршавају. За нови сертификат потребна је поновна провера идентитета.",
     "Every certificate is revoked, the consent app is no longer active, and every session ends. A "
     "new certificate needs a new identity check."},
    {"cert.revoke-all.button", "Опозови све", "Revoke everything"},
    {"cert.revoke-all.done.title", "Све је опозвано", "Everything revoked"},
    {"cert.revoke-all.done",
     "Сви сертификати су опозвани, апликација више није активна и сесија је завршена.",
     "Every certificate is revoked, the app is no longer active and the session has ended."},
    {"cert.revoked_count", "Опозвано сертификата:", "Certificates revoked:"},
    {"cert.devices_count", "Деактивирано апликација:", "Apps deactivated:"},

    {"contract.title", "Уговор са корисником", "Subscriber contract"},
    {"contract.version", "Верзија", "Version"},
    {"contract.accepted", "Прихваћен уговор", "Contract accepted"},
    {"contract.none", "није прихваћен", "not accepted"},
    {"contract.read", "Прочитај и прихвати уговор", "Read and accept the contract"},
    {"contract.accept", "Прихватам уговор", "I accept the contract"},
    {"contract.done", "Уговор је прихваћен; копија стиже на вашу е-пошту.",
     "The contract is accepted; a copy is on its way to your e-mail."},

    {"sign.title", "Потпиши документ", "Sign a document"},
    {"sign.intro",
     "Изаберите датотеку и ниво потписа. PDF потписујемо у самом документу (PAdES), сваку другу "
     "датотеку одвојеним потписом CAdES (.p7s). Потпис одобравате у апликацији.",
     "Choose a file and the signature level. A PDF is signed inside the document (PAdES), any "
     "other file with a detached CAdES signature (.p7s). You approve the signature in your app."},
    {"sign.file", "Датотека", "File"},
    {"sign.submit", "Потпиши", "Sign"},
    {"sign.no_file", "Изаберите датотеку.", "Choose a file."},
    {"sign.too_large", "Датотека је превелика.", "The file is too large."},
    {"sign.bad_pdf", "PDF није могуће потписати (оштећен или шифрован).",
     "This PDF cannot be signed (damaged or encrypted)."},
    {"sign.no_certificate", "Нема активног сертификата; прво га издајте.",
     "No active certificate; issue one first."},
    {"sign.wait.title", "Одобрите потпис у апликацији", "Approve the signature in the app"},
    {"sign.waiting", "Чекамо одобрење из апликације…", "Waiting for the app…"},
    {"sign.download", "Преузми потписану датотеку", "Download the signed file"},
    {"sign.done", "Потписано.", "Signed."},
    {"sign.denied", "Потпис је одбијен у апликацији.", "The signature was refused in the app."},
    {"sign.expired", "Потпис није одобрен на време.", "The signature was not approved in time."},
    {"sign.failed", "Потписивање није успело; покушајте поново.", "Signing failed; try again."},
    {"sign.level", "Ниво потписа", "Signature level"},
    {"sign.level.b-t", "B-T — са временским жигом (препоручено)",
     "B-T — with a timestamp (recommended)"},
    {"sign.level.b-lt",
     "B-LT — са временским жигом и подацима за дугорочну проверу (сертификати, OCSP)",
     "B-LT — with a timestamp and the data for long-term validation (certificates, OCSP)"},
    {"sign.level.b-b", "B-B — основни, без временског жига", "B-B — basic, no timestamp"},
    {"sign.no_tsa", "Овај портал нема службу временског жига: могућ је само ниво B-B.",
     "This portal has no timestamp authority: only level B-B is available."},
    {"sign.bad_level", "Непознат ниво потписа.", "Unknown signature level."},
    {"sign.failed.title", "Потписивање није успело", "Signing failed"},
    {"sign.tsa_failed",
     "Потпис сте одобрили, али служба временског жига (TSA) није одговорила, па потписана "
     "датотека није направљена. Покушајте поново касније или изаберите ниво B-B.",
     "You approved the signature, but the timestamp authority (TSA) did not answer, so no signed "
     "file was made. Try again later or choose level B-B."},
    {"sign.ocsp_failed",
     "Потпис сте одобрили, али служба за проверу статуса сертификата (OCSP) није одговорила, па "
     "потписана датотека B-LT није направљена. Покушајте поново касније или изаберите ниво B-T.",
     "You approved the signature, but the certificate status service (OCSP) did not answer, so "
     "no B-LT signed file was made. Try again later or choose level B-T."},
    {"sign.again", "Потпиши поново", "Sign again"},

    {"app.heading", "Апликација за сагласност", "Consent app"},
    {"app.loading", "Учитавање…", "Loading…"},
    {"app.enrol.intro",
     "Унесите код за активацију из регистрационог центра и изаберите ПИН (6–8 цифара).",
     "Enter the activation code from the registration office and choose a PIN (6–8 digits)."},
    {"app.code", "Код за активацију", "Activation code"},
    {"app.device_name", "Назив уређаја", "Device name"},
    {"app.pin", "ПИН", "PIN"},
    {"app.pin_again", "Поновите ПИН", "PIN again"},
    {"app.pin_mismatch", "ПИН-ови се не поклапају.", "The PINs differ."},
    {"app.enrol", "Активирај", "Activate"},
    {"app.enrolled_as", "Активна апликација:", "Active app:"},
    {"app.none", "Нема захтева на чекању.", "No pending requests."},
    {"app.kind.login", "Пријава", "Log in"},
    {"app.kind.sign", "Потписивање", "Signature"},
    {"app.code_is", "Верификациони код:", "Verification code:"},
    {"app.requester", "Захтева:", "Asked by:"},
    {"app.from_portal", "еИД портал (ви)", "eID portal (you)"},
    {"app.from", "Покренуто са:", "Started from:"},
    {"app.pages", "стр.", "pages"},
    {"app.login_summary", "Пријава, верификациони код {code}", "Log in, verification code {code}"},
    {"app.sign_summary", "Потписивање ({count}): {names}", "Signature ({count}): {names}"},
    {"app.statement", "Текст захтева:", "The request's text:"},
    {"app.statement_mismatch",
     "Захтев није исправан: оно што је приказано не одговара ономе што би се потписало. Апликација "
     "га не потписује.",
     "This request is not valid: what is shown differs from what would be signed. The app does not "
     "sign it."},
    {"app.sha256", "SHA-256", "SHA-256"},
    {"app.approve", "Одобри", "Approve"},
    {"app.deny", "Одбиј", "Deny"},
    {"app.approved", "Одобрено.", "Approved."},
    {"app.denied", "Одбијено.", "Denied."},
    {"app.pin_wrong", "Погрешан ПИН. Преостало покушаја:", "Wrong PIN. Attempts left:"},
    {"app.pin_blocked",
     "ПИН је блокиран; обратите се регистрационом центру, па овде поставите нови ПИН.",
     "The PIN is blocked; visit a registration office, then set a new PIN here."},
    {"app.pin_menu", "Подешавања ПИН-а", "PIN settings"},
    {"app.change_pin", "Промена ПИН-а", "Change the PIN"},
    {"app.old_pin", "Тренутни ПИН", "Current PIN"},
    {"app.new_pin", "Нови ПИН", "New PIN"},
    {"app.new_pin_again", "Поновите нови ПИН", "New PIN again"},
    {"app.change_pin.submit", "Промени ПИН", "Change the PIN"},
    {"app.pin_changed", "ПИН је промењен.", "The PIN is changed."},
    {"app.reset_pin", "Нови ПИН након деблокаде", "A new PIN after an unblock"},
    {"app.reset_pin.intro",
     "Када регистрациони центар, након провере идентитета, отвори деблокаду, овде постављате "
     "нови ПИН (у року од 24 сата). Службеник ваш ПИН никада не види.",
     "Once a registration office has checked your identity and opened an unblock, set the new "
     "PIN here (within 24 hours). The officer never sees your PIN."},
    {"app.reset_pin.submit", "Постави нови ПИН", "Set the new PIN"},
    {"app.pin_reset", "Нови ПИН је постављен.", "The new PIN is set."},
    {"app.back", "Назад", "Back"},
    {"app.expired", "Захтев је истекао.", "The request expired."},
    {"app.open", "Отвори", "Open"},
    {"app.inactive",
     "Ова апликација више није активна (опозвана или замењена). Активирајте је поново новим кодом.",
     "This app is no longer active (revoked or replaced). Activate it again with a new code."},
    {"app.reset", "Активирај поново", "Activate again"},
    {"app.no_webcrypto", "Овај прегледач нема WebCrypto и IndexedDB; апликација не може да ради.",
     "This browser lacks WebCrypto and IndexedDB; the app cannot run."},

    {"office.login.title", "Пријава службеника", "Officer sign-in"},
    {"office.login.intro", "Пријавите се својим службеничким акредитивом (не налогом портала).",
     "Sign in with your officer credential (not a portal account)."},
    {"office.operator_id", "Ознака службеника", "Officer id"},
    {"office.secret", "Тајна", "Secret"},
    {"office.login", "Пријави се", "Sign in"},
    {"office.login.refused", "Акредитив није прихваћен.", "The credential was not accepted."},
    {"office.query", "Корисничко име или ИД налога", "Username or account id"},
    {"office.find", "Пронађи налог", "Find an account"},
    {"office.not_found", "Налог није пронађен.", "No such account."},
    {"office.account_id", "ИД налога", "Account id"},
    {"office.proof", "Провера идентитета", "Identity proofing"},
    {"office.doc_type", "Документ", "Document"},
    {"office.doc.id_card", "лична карта", "ID card"},
    {"office.doc.passport", "пасош", "passport"},
    {"office.doc_number", "Број документа", "Document number"},
    {"office.doc_expiry", "Важи до", "Valid until"},
    {"office.place", "Место", "Place"},
    {"office.proof.submit", "Потврди идентитет", "Confirm the identity"},
    {"office.proofed.title", "Идентитет је потврђен", "Identity confirmed"},
    {"office.proofed", "Предајте особи код за активацију апликације (приказује се само сада):",
     "Hand the person the app's activation code (shown only now):"},
    {"office.code_expires", "Код важи до", "The code is valid until"},
    {"office.back", "Назад на налог", "Back to the account"},
    {"office.legal", "Правно лице", "Legal person"},
    {"office.org_name", "Назив правног лица", "Company name"},
    {"office.pib", "ПИБ", "Tax id (PIB)"},
    {"office.mb", "Матични број", "Registration number (MB)"},
    {"office.auth_doc", "Ознака овлашћења", "Authorization document reference"},
    {"office.legal.submit", "Одобри правно лице", "Approve the legal person"},
    {"office.legal.done", "Правно лице је одобрено.", "The legal person is approved."},
    {"office.unblock", "Деблокада ПИН-а", "PIN unblock"},
    {"office.unblock.intro",
     "Тек након поновне провере идентитета (у последњих сат времена). Службеник не види ПИН: "
     "особа затим сама поставља нови ПИН у апликацији, у року од 24 сата.",
     "Only after identity proofing again (within the last hour). The officer never sees the PIN: "
     "the person then sets the new PIN on the app, within 24 hours."},
    {"office.note", "Напомена", "Note"},
    {"office.unblock.submit", "Деблокирај", "Unblock"},
    {"office.unblock.done",
     "Деблокада је отворена: особа поставља нови ПИН у апликацији у року од 24 сата.",
     "The unblock is open: the person sets the new PIN on the app within 24 hours."},
    {"office.revoke", "Опозив на захтев грађанина", "Revoke at the citizen's request"},
    {"office.correct", "Исправка података пре провере", "Correct the data before proofing"},
    {"office.correct.intro",
     "Ако се име, презиме или ЈМБГ не слажу са документом због грешке при куцању, исправите их "
     "пре провере идентитета. Стари и нови подаци се бележе у ревизиони траг.",
     "If the name, surname or JMBG differ from the document by a typo, correct them before "
     "proofing. The old and the new values go into the audit trail."},
    {"office.correct.submit", "Исправи податке", "Correct the data"},
    {"office.correct.done", "Подаци су исправљени.", "The data is corrected."},
    {"office.audit", "Ревизиони траг налога", "The account's audit trail"},
    {"audit.at", "Време", "Time"},
    {"audit.action", "Догађај", "Event"},
    {"audit.actor", "Ко", "Who"},
    {"audit.outcome", "Исход", "Outcome"},
    {"audit.address", "Адреса", "Address"},
    {"audit.details", "Детаљи", "Details"},
    {"audit.none", "Нема записа.", "No records."},
    {"audit.older", "Старији записи", "Older records"},
    {"audit.identity.registration.request", "Захтев за регистрацију", "Registration requested"},
    {"audit.identity.account.register", "Регистрација потврђена", "Registration confirmed"},
    {"audit.identity.account.expire", "Непроверен налог обрисан", "Unproofed account deleted"},
    {"audit.identity.correct", "Подаци исправљени", "Data corrected"},
    {"audit.identity.proof", "Идентитет проверен", "Identity proofed"},
    {"audit.identity.activation_code.redeem", "Апликација активирана кодом",
     "App activated with the code"},
    {"audit.identity.login.start", "Пријава започета", "Login started"},
    {"audit.identity.login.finish", "Пријава завршена", "Login finished"},
    {"audit.identity.session.issue", "Сесија отворена", "Session opened"},
    {"audit.identity.session.logout", "Одјава", "Logged out"},
    {"audit.identity.session.revoke_all", "Све сесије окончане", "All sessions ended"},
    {"audit.source", "Где", "Where"},
    {"audit.unavailable", "Записи ове службе тренутно нису доступни",
     "This service's records are not available right now"},
    {"audit.contract.accept", "Уговор прихваћен", "Contract accepted"},
    {"audit.certificate.issue.intent", "Издавање сертификата започето",
     "Certificate issuance started"},
    {"audit.certificate.issue", "Сертификат издат", "Certificate issued"},
    {"audit.certificate.renew.intent", "Обнова сертификата започета",
     "Certificate renewal started"},
    {"audit.certificate.renew", "Сертификат обновљен", "Certificate renewed"},
    {"audit.certificate.revoke.request", "Затражен опозив сертификата",
     "Certificate revocation requested"},
    {"audit.certificate.revoke", "Сертификат опозван", "Certificate revoked"},
    {"audit.certificate.abandon", "Прекинуто издавање напуштено", "Interrupted issuance abandoned"},
    {"audit.certificate.expire", "Сертификат истекао", "Certificate expired"},
    {"audit.certificate.key_destroyed", "Кључ уништен у HSM-у", "Key destroyed in the HSM"},
    {"audit.account.revoke_all.start", "Опозив свега започет", "Revoke all started"},
    {"audit.account.revoke_all.done", "Опозив свега завршен", "Revoke all finished"},
    {"audit.legal_person.approve", "Правно лице одобрено", "Legal person approved"},
    {"audit.device_certificate.issue", "Сертификат апликације издат", "App certificate issued"},
    {"audit.device.enroll", "Апликација активирана", "App enrolled"},
    {"audit.device.deactivate_all", "Апликација деактивирана", "App deactivated"},
    {"audit.login.approve", "Пријава одобрена у апликацији", "Login approved in the app"},
    {"audit.login.deny", "Пријава одбијена у апликацији", "Login denied in the app"},
    {"audit.sign.approve", "Потписивање одобрено у апликацији", "Signing approved in the app"},
    {"audit.sign.deny", "Потписивање одбијено у апликацији", "Signing denied in the app"},
    {"audit.pin.change", "ПИН промењен", "PIN changed"},
    {"audit.pin.unblock", "Отворено постављање новог ПИН-а", "PIN reset opened"},
    {"audit.pin.reset", "Нови ПИН постављен", "New PIN set"},
};

const absl::flat_hash_map<std::string_view, const Message*>& Table() {
  static const auto* table = [] {
    auto* t = new absl::flat_hash_map<std::string_view, const Message*>();
    for (const Message& m : kMessages) t->emplace(m.key, &m);
    return t;
  }();
  return *table;
}

// Serbian Cyrillic letters and their Latin spelling (Serbian Latin alphabet).
constexpr std::pair<std::string_view, std::string_view> kLetters[] = {
    {"А", "A"},  {"Б", "B"},  {"В", "V"},  {"Г", "G"}, {"Д", "D"},  {"Ђ", "Đ"}, {"Е", "E"},
    {"Ж", "Ž"},  {"З", "Z"},  {"И", "I"},  {"Ј", "J"}, {"К", "K"},  {"Л", "L"}, {"Љ", "Lj"},
    {"М", "M"},  {"Н", "N"},  {"Њ", "Nj"}, {"О", "O"}, {"П", "P"},  {"Р", "R"}, {"С", "S"},
    {"Т", "T"},  {"Ћ", "Ć"},  {"У", "U"},  {"Ф", "F"}, {"Х", "H"},  {"Ц", "C"}, {"Ч", "Č"},
    {"Џ", "Dž"}, {"Ш", "Š"},  {"а", "a"},  {"б", "b"}, {"в", "v"},  {"г", "g"}, {"д", "d"},
    {"ђ", "đ"},  {"е", "e"},  {"ж", "ž"},  {"з", "z"}, {"и", "i"},  {"ј", "j"}, {"к", "k"},
    {"л", "l"},  {"љ", "lj"}, {"м", "m"},  {"н", "n"}, {"њ", "nj"}, {"о", "o"}, {"п", "p"},
    {"р", "r"},  {"с", "s"},  {"т", "t"},  {"ћ", "ć"}, {"у", "u"},  {"ф", "f"}, {"х", "h"},
    {"ц", "c"},  {"ч", "č"},  {"џ", "dž"}, {"ш", "š"},
};

}  // namespace

std::string_view LangTag(Lang lang) {
  switch (lang) {
    case Lang::kSrLatn:
      return "sr-Latn";
    case Lang::kEn:
      return "en";
    case Lang::kSrCyrl:
      break;
  }
  return "sr-Cyrl";
}

Lang ParseLang(std::string_view tag) {
  if (tag == "sr-Latn") return Lang::kSrLatn;
  if (tag == "en") return Lang::kEn;
  return Lang::kSrCyrl;
}

const std::vector<Lang>& AllLangs() {
  static const std::vector<Lang> langs = {Lang::kSrCyrl, Lang::kSrLatn, Lang::kEn};
  return langs;
}

std::string CyrillicToLatin(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    bool replaced = false;
    // Serbian Cyrillic letters are two bytes in UTF-8 (0xD0 / 0xD1 lead bytes).
    if (i + 1 < text.size() && (static_cast<unsigned char>(text[i]) == 0xD0 ||
                                static_cast<unsigned char>(text[i]) == 0xD1 ||
                                static_cast<unsigned char>(text[i]) == 0xD2)) {
      const std::string_view letter = text.substr(i, 2);
      for (const auto& [cyr, lat] : kLetters) {
        if (cyr == letter) {
          out += lat;
          replaced = true;
          break;
        }
      }
    }
    if (replaced) {
      i += 2;
    } else {
      out += text[i++];
    }
  }
  return out;
}

std::string T(Lang lang, std::string_view key) {
  auto it = Table().find(key);
  if (it == Table().end()) return std::string(key);
  switch (lang) {
    case Lang::kEn:
      return std::string(it->second->en);
    case Lang::kSrLatn:
      if (key == "lang.name") return "Srpski (latinica)";
      return CyrillicToLatin(it->second->sr);
    case Lang::kSrCyrl:
      break;
  }
  return std::string(it->second->sr);
}

std::vector<std::string_view> MessageKeys() {
  std::vector<std::string_view> keys;
  for (const Message& m : kMessages) keys.push_back(m.key);
  return keys;
}

}  // namespace qsign::web
