"""Development tooling: installed in the development checkout's venv, never copied into a
cluster or Airflow image. The local stack (``stack``), the demo driver (``demo``), the Airflow
REST client both use (``airflow_client``), the APPS benchmark's baseline harness
(``apps_seed_style``) and the builder of the shipped APPS training fixture
(``apps_train_fixture``)."""
