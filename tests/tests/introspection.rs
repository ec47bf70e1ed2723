//! `rpc.describe`: a server says what its service offers (PROTOCOL.md §10),
//! types and docs included, unless introspection is off.

use rpc_runtime::{Client, RpcError, Server, Shape, TypeDefinition, VariantFields};
use rpc_tests::{LabControl, LabFixture, PATIENCE, TestQueue, lab_server, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_describes_its_methods_types_and_docs() {
    let fixture = LabFixture::start("describe").await;
    let description = within(
        PATIENCE,
        "a description",
        fixture.client.describe(&fixture.queue.name),
    )
    .await
    .expect("described");
    assert_eq!(description.service, "Lab");
    assert_eq!(
        description.docs,
        "A service with one method per behaviour under test."
    );
    let names: Vec<&str> = description
        .methods
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "echo", "add", "nothing", "describe", "explode", "hold", "record", "whoami", "nap",
            "context"
        ]
    );

    let echo = description.method("echo").expect("echo");
    assert_eq!(echo.docs, "Returns its argument.");
    assert_eq!(echo.args[0].name, "text");
    assert_eq!(echo.args[0].ty.written, "String");
    assert_eq!(echo.args[0].ty.shape, Shape::Str);

    let nothing = description.method("nothing").expect("nothing");
    assert!(nothing.args.is_empty());
    assert_eq!(nothing.returns.shape, Shape::Unit);

    // Structs, enums, a fallible method, a tuple.
    let describe = description.method("describe").expect("describe");
    assert_eq!(describe.args[0].ty.shape, Shape::Named("Shape".into()));
    assert_eq!(describe.args[1].ty.shape, Shape::Named("Point".into()));
    assert_eq!(describe.returns.shape, Shape::Str);
    let error = describe.error.as_ref().expect("an error type");
    assert_eq!(error.written, "LabError");
    let TypeDefinition::Enum(variants) = &description.types["Shape"] else {
        panic!("Shape is an enum: {:?}", description.types["Shape"]);
    };
    let variant_names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(variant_names, ["Circle", "Square", "Dot"]);
    assert_eq!(variants[2].fields, VariantFields::Unit);
    let TypeDefinition::Struct(fields) = &description.types["Point"] else {
        panic!("Point is a struct");
    };
    let field_names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(field_names, ["x", "y"]);
    let hold = description.method("hold").expect("hold");
    assert_eq!(hold.returns.written, "(String, bool)");
    assert_eq!(
        hold.returns.shape,
        Shape::Tuple(vec![Shape::Str, Shape::Bool])
    );

    assert_eq!(description.schema_hash.len(), 16);
    assert!(
        description
            .methods
            .iter()
            .all(|m| m.signature_hash.len() == 16)
    );
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_introspection_off_describe_is_an_unknown_method() {
    let connection = rpc_tests::connect("describe-off").await;
    let queue = TestQueue::new("describe-off");
    let server = Server::builder()
        .queue(&queue.name)
        .introspection(false)
        .serve(&connection, lab_server("quiet", &LabControl::default()))
        .await
        .expect("serve");
    let client = Client::new(&connection).await.expect("client");
    match within(PATIENCE, "a description", client.describe(&queue.name)).await {
        Err(RpcError::Fault { fault, .. }) => {
            assert_eq!(fault.kind().to_string(), "unknown_method")
        }
        other => panic!("expected unknown_method, got {other:?}"),
    }
    server.shutdown().await;
    connection.close().await;
}
