/*
 * test_hc_state.c — the verdict state machine: first result, rise/fall
 * debouncing, the "changing" hint, and flap damping with its exponential
 * back-off and reset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hc_check.h"

static const struct hc_sm_params p_nodamp = { .rise = 2, .fall = 3 };
static const struct hc_sm_params p_damp = { .rise = 1, .fall = 1, .damp_flaps = 4,
                                            .damp_window_ms = 10000, .damp_hold_ms = 1000,
                                            .damp_max_ms = 3000 };

static void test_first_result_decides(void **state)
{
	struct hc_sm sm;

	hc_sm_init(&sm);
	assert_false(hc_sm_effective_up(&sm, 0));
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, false, 0), HC_SM_WENT_DOWN);
	assert_false(hc_sm_effective_up(&sm, 0));
	hc_sm_init(&sm);
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, true, 0), HC_SM_WENT_UP);
	assert_true(hc_sm_effective_up(&sm, 0));
}

static void test_fall_needs_consecutive_failures(void **state)
{
	struct hc_sm sm;

	hc_sm_init(&sm);
	hc_sm_result(&sm, &p_nodamp, true, 0);
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, false, 100), HC_SM_SAME);
	assert_true(hc_sm_changing(&sm));
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, false, 200), HC_SM_SAME);
	/* a success in between resets the run */
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, true, 300), HC_SM_SAME);
	assert_false(hc_sm_changing(&sm));
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, false, 400), HC_SM_SAME);
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, false, 500), HC_SM_SAME);
	assert_true(hc_sm_effective_up(&sm, 500));
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, false, 600), HC_SM_WENT_DOWN);
	assert_false(hc_sm_effective_up(&sm, 600));
	assert_false(hc_sm_changing(&sm));
}

static void test_rise_needs_consecutive_successes(void **state)
{
	struct hc_sm sm;

	hc_sm_init(&sm);
	hc_sm_result(&sm, &p_nodamp, false, 0);
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, true, 100), HC_SM_SAME);
	assert_true(hc_sm_changing(&sm));
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, false, 200), HC_SM_SAME);
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, true, 300), HC_SM_SAME);
	assert_int_equal(hc_sm_result(&sm, &p_nodamp, true, 400), HC_SM_WENT_UP);
	assert_true(hc_sm_effective_up(&sm, 400));
}

static void test_zero_rise_fall_mean_one(void **state)
{
	struct hc_sm_params p = { 0 };
	struct hc_sm sm;

	hc_sm_init(&sm);
	hc_sm_result(&sm, &p, true, 0);
	assert_int_equal(hc_sm_result(&sm, &p, false, 1), HC_SM_WENT_DOWN);
	assert_int_equal(hc_sm_result(&sm, &p, true, 2), HC_SM_WENT_UP);
}

/* Flips a damped target down then up at t and t+10; returns effective-up
 * right after the up flip. */
static bool flap(struct hc_sm *sm, int64_t t)
{
	hc_sm_result(sm, &p_damp, false, t);
	hc_sm_result(sm, &p_damp, true, t + 10);
	return hc_sm_effective_up(sm, t + 10);
}

static void test_damping_holds_and_doubles(void **state)
{
	struct hc_sm sm;

	hc_sm_init(&sm);
	hc_sm_result(&sm, &p_damp, true, 0);          /* first verdict: not a flap */
	assert_true(flap(&sm, 100));                  /* first change (no flap), flap 1 (up) */
	assert_true(flap(&sm, 200));                  /* flaps 2, 3 (up): not yet held */
	assert_int_equal(sm.flaps, 3);
	assert_false(flap(&sm, 300));                 /* flaps 4, 5 (up): held 1000 ms */
	assert_true(hc_sm_held(&sm, 310));
	assert_true(hc_sm_held(&sm, 1309));
	assert_false(hc_sm_held(&sm, 1310));
	assert_true(hc_sm_effective_up(&sm, 1310));
	assert_false(flap(&sm, 1400));                /* next hold doubles: 2000 ms */
	assert_true(hc_sm_held(&sm, 1410 + 1999));
	assert_false(hc_sm_held(&sm, 1410 + 2000));
	assert_false(flap(&sm, 4000));                /* 4000 ms, capped at 3000 */
	assert_true(hc_sm_held(&sm, 4010 + 2999));
	assert_false(hc_sm_held(&sm, 4010 + 3000));
}

/* The documented count (README.md, --damp-flaps 4): a change to up is held
 * once it is the 4th flap or later, a flap being a change within the window
 * of the previous change. A target that starts down and comes up, goes
 * down, comes up, goes down, comes up: the changes are "first", then flaps
 * 1, 2, 3, 4: only the last one is held. It used to be held one flap early
 * (the first change counted as a flap). */
static void test_damping_counts_four_flaps(void **state)
{
	struct hc_sm sm;

	hc_sm_init(&sm);
	hc_sm_result(&sm, &p_damp, false, 0);
	hc_sm_result(&sm, &p_damp, true, 100);        /* first change */
	assert_true(hc_sm_effective_up(&sm, 100));
	hc_sm_result(&sm, &p_damp, false, 200);       /* flap 1 */
	hc_sm_result(&sm, &p_damp, true, 300);        /* flap 2 (up) */
	assert_true(hc_sm_effective_up(&sm, 300));
	hc_sm_result(&sm, &p_damp, false, 400);       /* flap 3 */
	assert_int_equal(sm.flaps, 3);
	hc_sm_result(&sm, &p_damp, true, 500);        /* flap 4 (up): held */
	assert_int_equal(sm.flaps, 4);
	assert_false(hc_sm_effective_up(&sm, 500));
	assert_true(hc_sm_held(&sm, 500 + 999));
	assert_true(hc_sm_effective_up(&sm, 500 + 1000));
}

static void test_damping_resets_after_quiet_window(void **state)
{
	struct hc_sm sm;

	hc_sm_init(&sm);
	hc_sm_result(&sm, &p_damp, true, 0);
	flap(&sm, 100);
	flap(&sm, 200);
	assert_false(flap(&sm, 300));                 /* held */
	/* quiet for more than the window: the count and the doubling restart */
	assert_true(flap(&sm, 310 + 10000 + 100));
	assert_true(flap(&sm, 310 + 10000 + 200));
	assert_true(flap(&sm, 310 + 10000 + 300) == false);  /* 4 flaps again -> held */
	assert_true(hc_sm_held(&sm, 10620 + 999));
	assert_false(hc_sm_held(&sm, 10620 + 1000));  /* first hold length again */
}

static void test_damping_off(void **state)
{
	struct hc_sm_params p = p_damp;
	struct hc_sm sm;

	p.damp_flaps = 0;
	hc_sm_init(&sm);
	hc_sm_result(&sm, &p, true, 0);
	for (int i = 0; i < 20; i++) {
		hc_sm_result(&sm, &p, false, 100 * i);
		hc_sm_result(&sm, &p, true, 100 * i + 10);
		assert_true(hc_sm_effective_up(&sm, 100 * i + 10));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_result_decides),
		cmocka_unit_test(test_fall_needs_consecutive_failures),
		cmocka_unit_test(test_rise_needs_consecutive_successes),
		cmocka_unit_test(test_zero_rise_fall_mean_one),
		cmocka_unit_test(test_damping_holds_and_doubles),
		cmocka_unit_test(test_damping_counts_four_flaps),
		cmocka_unit_test(test_damping_resets_after_quiet_window),
		cmocka_unit_test(test_damping_off),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
