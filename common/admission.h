#pragma once

// How a caller tells persistence that a call continues work it has already accepted.
//
// Persistence sheds load at the door: a call past --store_queue_limit is refused with
// RESOURCE_EXHAUSTED. A chat turn whose message is stored and acknowledged is past the door; the
// calls that finish it (its history read, opening its reply) carry this metadata and wait their
// turn instead, so an acknowledged message is answered rather than abandoned halfway.
namespace parley::common {

inline constexpr char kAdmissionMetadataKey[] = "parley-admission";
inline constexpr char kAdmissionContinuing[] = "continuing";

}  // namespace parley::common
