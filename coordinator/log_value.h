// Client-controlled text (user, path, method, remote, ...) on a log line. Without escaping,
// a CR or LF in a request field would end the line and let a client forge the next one, an
// ESC sequence would rewrite the operator's terminal, and U+2028/U+2029 or bidi controls
// would break or reorder the line in viewers that honour them.
#pragma once

#include <string>
#include <string_view>

namespace accullm::coordinator {

// One logfmt value. Bare when it is non-empty printable ASCII without space, '"', '=' or
// '\'; otherwise quoted, with '"' and '\' backslash-escaped, \n \r \t as such, other C0
// controls, DEL and every byte that is not part of well-formed UTF-8 as \xNN, and the C1
// controls, U+2028/U+2029 and the bidi controls (U+200E/F, U+202A..E, U+2066..9) as
// \uNNNN. Other UTF-8 text is kept as is. The result never contains a byte below 0x20 or
// DEL, and never contains invalid UTF-8.
std::string LogValue(std::string_view v);

}  // namespace accullm::coordinator
