/*
 * hc_state.c — the verdict state machine of one target: rise/fall
 * debouncing and exponential flap damping (see hc_check.h and README.md).
 */
#include <string.h>

#include "hc_check.h"

/* Resets a target to "no result yet". */
void hc_sm_init(struct hc_sm *sm)
{
	memset(sm, 0, sizeof(*sm));
}

/* Records a debounced change at now_ms and applies damping. */
static void sm_flip(struct hc_sm *sm, const struct hc_sm_params *p, bool up, int64_t now_ms)
{
	if (sm->changed && now_ms - sm->last_flip_ms <= (int64_t)p->damp_window_ms) {
		sm->flaps++;               /* within the window of the previous change */
	} else {
		/* the first change, or the first after a quiet window: it starts
		 * the count (a flap is a change coming back within the window of
		 * another) and forgets the doubling */
		sm->flaps = 0;
		sm->holds = 0;
	}
	sm->changed = true;
	sm->last_flip_ms = now_ms;
	sm->up = up;
	if (up && p->damp_flaps > 0 && sm->flaps >= p->damp_flaps) {
		uint64_t hold = p->damp_hold_ms;

		for (unsigned i = 0; i < sm->holds && hold < p->damp_max_ms; i++)
			hold *= 2;
		if (hold > p->damp_max_ms)
			hold = p->damp_max_ms;
		sm->held_until_ms = now_ms + (int64_t)hold;
		sm->holds++;
	}
}

/* Feeds one result; see hc_check.h. */
enum hc_sm_change hc_sm_result(struct hc_sm *sm, const struct hc_sm_params *p, bool ok,
                               int64_t now_ms)
{
	unsigned rise = p->rise ? p->rise : 1, fall = p->fall ? p->fall : 1;

	if (!sm->known) {
		sm->known = true;
		sm->up = ok;
		sm->ok_run = ok;
		sm->fail_run = !ok;
		sm->last_flip_ms = now_ms;
		return ok ? HC_SM_WENT_UP : HC_SM_WENT_DOWN;
	}
	if (ok) {
		sm->ok_run++;
		sm->fail_run = 0;
		if (!sm->up && sm->ok_run >= rise) {
			sm_flip(sm, p, true, now_ms);
			return HC_SM_WENT_UP;
		}
	} else {
		sm->fail_run++;
		sm->ok_run = 0;
		if (sm->up && sm->fail_run >= fall) {
			sm_flip(sm, p, false, now_ms);
			return HC_SM_WENT_DOWN;
		}
	}
	return HC_SM_SAME;
}

/* True while a damping hold is running. */
bool hc_sm_held(const struct hc_sm *sm, int64_t now_ms)
{
	return now_ms < sm->held_until_ms;
}

/* Up and not held down. */
bool hc_sm_effective_up(const struct hc_sm *sm, int64_t now_ms)
{
	return sm->known && sm->up && !hc_sm_held(sm, now_ms);
}

/* Results disagree with the verdict: a change is in progress. */
bool hc_sm_changing(const struct hc_sm *sm)
{
	return sm->known && (sm->up ? sm->fail_run > 0 : sm->ok_run > 0);
}
