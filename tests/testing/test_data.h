// Data the tests share: valid national ID numbers, the PIN the consent apps use, and the test
// secrets (none of them protects anything; they only have to match between a test's services
// and its clients).
#ifndef QSIGN_TESTS_TESTING_TEST_DATA_H_
#define QSIGN_TESTS_TESTING_TEST_DATA_H_

#include <string>
#include <string_view>

namespace qsign::testing {

// A valid 13-digit national identification number (JMBG) with its check digit: born 1 Jan 1990,
// the serial taken from `n`. Distinct for distinct n in [0, 1000); NationalId(0) is
// "0101990710008".
std::string NationalId(int n);
// A valid national ID number, distinct for distinct n in [0, 336000) and from every NationalId
// (born in 1985: day, month and serial from `n`), for benchmarks that register many people.
std::string ManyNationalId(int n);

// The PIN the tests' consent apps are enrolled with.
inline constexpr char kPin[] = "240913";

// The registration officer the tests' identity service knows, and its secret.
inline constexpr char kOperatorId[] = "ra-ana";
inline constexpr char kOperatorSecret[] = "operator-secret";

// The secret a service presents to another: "<service>-secret".
std::string ServiceSecret(std::string_view service);
// The authorization header values those credentials make.
std::string ServiceAuthorization(std::string_view service);  // "Service <svc>.<svc>-secret"
std::string OperatorAuthorization();                         // "Operator ra-ana.operator-secret"

// The consent service's PIN-hashing key (32 bytes).
std::string PinHashKey();

// A loopback TCP port nobody listens on at the moment of the call, for a process that must be
// told its port before it starts (a child binds it a moment later). Taken below the kernel's
// ephemeral port range, so no listener bound to port 0 meanwhile can be given it; never the same
// port twice in one process. 0 if none was found.
int FreeLoopbackPort();

}  // namespace qsign::testing

#endif  // QSIGN_TESTS_TESTING_TEST_DATA_H_
