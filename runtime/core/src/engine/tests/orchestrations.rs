//! Sequential, parallel and conditional orchestrations: what starts when.

use super::*;

#[test]
fn sequential_seed_runs_steps_one_after_another() {
    let plan = seed("01-SequentialOrchestration.yaml");
    let (mut e, actions) = start(&plan, json!({"order": 7}));
    assert_eq!(names(&plan, &e, &actions), ["validate_order"]);
    let (_, _, request) = &invokes(&plan, &e, &actions)[0];
    assert_eq!(
        request.url,
        "http://order-service.test/api/v1/orders/validate"
    );
    assert_eq!(&*request.method, "POST");
    assert_eq!(request.body.as_deref(), Some(&json!({"order": 7})));
    assert!(
        request
            .body
            .as_ref()
            .is_some_and(|body| body.shares(&e.input)),
        "a step without a body sends the input itself, not a copy"
    );
    assert_eq!(request.idempotency_key, "ex1:validate_order");

    let a = e.apply(
        &plan,
        ok(step(&plan, "validate_order"), 1, json!({"valid": true})),
        2_000,
    );
    assert_eq!(names(&plan, &e, &a), ["check_inventory"]);
    let a = e.apply(
        &plan,
        ok(step(&plan, "check_inventory"), 1, json!({"in_stock": true})),
        3_000,
    );
    assert_eq!(names(&plan, &e, &a), ["create_payment"]);
    assert_eq!(e.current, [Arc::from("create_payment")]);
    let a = e.apply(
        &plan,
        ok(step(&plan, "create_payment"), 1, json!({"id": "p1"})),
        4_000,
    );
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Completed);
    assert_eq!(
        output(&e),
        json!({"validate_order": {"valid": true}, "check_inventory": {"in_stock": true}, "create_payment": {"id": "p1"}})
    );
    // The default output shares each step's result instead of copying it.
    let payment = &e.steps[plan.find("create_payment").unwrap()];
    let shared = &e.output.as_ref().unwrap()["create_payment"];
    assert!(Arc::ptr_eq(shared, payment.result.as_ref().unwrap()));
    assert_eq!(e.api_calls, 3);
    assert_eq!(e.ended_at_ms, Some(4_000));

    // A stored record reads back whole, its results as text that nothing has parsed yet.
    let read: Execution = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
    assert_eq!(read, e);
    let result = read.steps[plan.find("create_payment").unwrap()]
        .result
        .as_ref();
    assert!(result.is_some_and(|r| r.parsed().is_none()));
}

#[test]
fn parallel_seed_forks_after_the_first_step_and_joins_at_the_end() {
    let plan = seed("02-ParallelOrchestration.yaml");
    let (mut e, actions) = start(&plan, json!({}));
    assert_eq!(names(&plan, &e, &actions), ["validate_order"]);
    let a = e.apply(&plan, ok(step(&plan, "validate_order"), 1, json!(1)), 2);
    assert_eq!(
        names(&plan, &e, &a),
        ["check_inventory", "check_payment_method"]
    );
    let a = e.apply(
        &plan,
        ok(step(&plan, "check_payment_method"), 1, json!(2)),
        3,
    );
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(e.status, Status::Running);
    let a = e.apply(&plan, ok(step(&plan, "check_inventory"), 1, json!(3)), 4);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Completed);
}

#[test]
fn a_failure_in_a_parallel_group_waits_for_the_group_to_settle() {
    let plan = seed("02-ParallelOrchestration.yaml");
    let (mut e, _) = start(&plan, json!({}));
    e.apply(&plan, ok(step(&plan, "validate_order"), 1, json!(1)), 2);
    let a = e.apply(&plan, fail(step(&plan, "check_inventory"), 1, 500), 3);
    assert!(a.is_empty(), "the other branch is still running: {a:?}");
    assert_eq!(e.status, Status::Running);
    let a = e.apply(
        &plan,
        ok(step(&plan, "check_payment_method"), 1, json!(2)),
        4,
    );
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Failed);
    assert!(
        e.error.as_deref().unwrap().contains("check_inventory"),
        "{:?}",
        e.error
    );
}

#[test]
fn conditional_seed_skips_the_discount_for_small_orders() {
    let plan = seed("03-ConditionalOrchestration.yaml");
    for (amount, expected) in [(1500, "apply_discount"), (999, "create_payment")] {
        let (mut e, actions) = start(&plan, json!({"id": "o-1"}));
        let (_, _, request) = &invokes(&plan, &e, &actions)[0];
        assert_eq!(
            request.url,
            "http://order-service.test/api/v1/orders/o-1/amount"
        );
        let a = e.apply(
            &plan,
            ok(
                step(&plan, "check_order_amount"),
                1,
                json!({"amount": amount}),
            ),
            2,
        );
        assert_eq!(names(&plan, &e, &a), [expected], "amount {amount}");
        if amount < 1000 {
            assert_eq!(e.steps[1].status, StepStatus::Skipped);
        }
    }
}

#[test]
fn a_condition_that_fails_at_run_time_fails_the_execution_naming_step_and_expression() {
    let plan = seed("03-ConditionalOrchestration.yaml");
    let (mut e, _) = start(&plan, json!({"id": 1}));
    let a = e.apply(
        &plan,
        ok(step(&plan, "check_order_amount"), 1, json!({"total": 5})),
        2,
    );
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Failed);
    let error = e.error.unwrap();
    assert!(
        error.contains("apply_discount") && error.contains("step1.amount > 1000"),
        "{error}"
    );
}
